# Foyer: make install | make run | make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed        # the project and the dev tools (make install, make test)
RUN    := $(VENV)/.installed-run    # the project and what running it needs (make run)
# setuptools prints a note that an editable install works through an import
# finder: information about editable mode, not about the package (a wheel
# build prints nothing; tests/server/ops/test_wheel.py checks it).
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e

.PHONY: install run test lint typecheck unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(EDITABLE) '.[dev]'
	touch $(STAMP) $(RUN)

$(RUN): pyproject.toml | $(BIN)/python
	$(EDITABLE) .
	touch $(RUN)

install: $(STAMP)

run: $(RUN)
	$(BIN)/foyer serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest -q -n 2

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

.PHONY: loadtest
loadtest: $(STAMP)  ## knock-path benchmark, Foyer beside its floor (docs/performance.md)
	$(BIN)/foyer-loadtest --spawn 2 $(LOADTEST_ARGS)
