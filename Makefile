# Foyer: make install | make run | make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed        # the project and the dev tools (make install, make test)
RUN    := $(VENV)/.installed-run    # the project and what running it needs (make run)
# The venv counts as made once pip is up to date in it, not once bin/python
# exists: a first run stopped with Ctrl-C during the pip upgrade left a venv
# with no pip, and every later make failed on it ("pip: not found").
VENV_OK := $(VENV)/.venv-ok
# setuptools prints a note that an editable install works through an import
# finder: information about editable mode, not about the package (a wheel
# build prints nothing; tests/server/ops/test_wheel.py checks it).
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e

.PHONY: install run test lint typecheck unit clean

# venv on an existing folder runs ensurepip again: a missing pip comes back.
$(VENV_OK):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $(VENV_OK)

$(STAMP): pyproject.toml | $(VENV_OK)
	$(EDITABLE) '.[dev]'
	touch $(STAMP) $(RUN)

$(RUN): pyproject.toml | $(VENV_OK)
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
