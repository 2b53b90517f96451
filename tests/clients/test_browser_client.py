"""foyer.js restates parts of the protocol (it has no build step to import
them): its close codes and link-option names must stay equal to Python's."""

from __future__ import annotations

import re
from pathlib import Path

from protocol.errors import CloseCode
from protocol.links import OPTION_NAMES
from protocol.lobby import LeftReason

ROOT = Path(__file__).resolve().parents[2]
FOYER_JS = ROOT / "clients" / "browser" / "foyer.js"
BROWSER_CODE = [
    *sorted((ROOT / "clients" / "browser").glob("*.js")),
    *sorted((ROOT / "server" / "web" / "templates").glob("*.html")),
]


def _frozen(source: str, name: str, brackets: str) -> str:
    """The body of ``export const NAME = Object.freeze(<open> ... <close>);``."""
    open_, close = (re.escape(c) for c in brackets)
    found = re.search(
        rf"export const {name} = Object\.freeze\({open_}(.*?){close}\);", source, re.DOTALL
    )
    assert found is not None, f"foyer.js has no frozen {name}"
    return found.group(1)


def _entries(body: str) -> list[str]:
    """The non-blank, non-comment lines of an object or array literal."""
    lines = (line.strip() for line in body.splitlines())
    return [line for line in lines if line and not line.startswith("//")]


def test_close_codes_equal_python() -> None:
    body = _frozen(FOYER_JS.read_text(), "CloseCode", "{}")
    entries = _entries(body)
    pairs = [re.fullmatch(r"([A-Z][A-Z0-9_]*): (\d+),?", line) for line in entries]
    assert all(pairs), f"an entry of CloseCode is not NAME: number: {entries}"
    js = [(m.group(1), int(m.group(2))) for m in pairs if m]
    assert js == [(code.name, code.value) for code in CloseCode]


def test_link_options_equal_python() -> None:
    body = _frozen(FOYER_JS.read_text(), "LINK_OPTIONS", "[]")
    entries = _entries(body)
    names = [re.fullmatch(r'"([a-z_]+)",?', line) for line in entries]
    assert all(names), f"an entry of LINK_OPTIONS is not a quoted name: {entries}"
    assert tuple(m.group(1) for m in names if m) == OPTION_NAMES


def test_left_reasons_equal_python() -> None:
    body = _frozen(FOYER_JS.read_text(), "LEFT_REASONS", "[]")
    names = [re.fullmatch(r'"([a-z_]+)",?', line) for line in _entries(body)]
    assert all(names), f"an entry of LEFT_REASONS is not a quoted name: {body}"
    assert [m.group(1) for m in names if m] == [reason.value for reason in LeftReason]


def test_the_console_words_every_left_reason() -> None:
    console = (ROOT / "clients" / "browser" / "console.js").read_text()
    found = re.search(r"const why = \{(.*?)\};", console, re.DOTALL)
    assert found is not None, "console.js has no 'why' map for guest_left reasons"
    worded = set(re.findall(r"^\s*([a-z_]+):", found.group(1), re.MULTILINE))
    assert worded == {reason.value for reason in LeftReason}


def test_browser_code_uses_only_known_close_codes() -> None:
    used = {
        (path.name, name)
        for path in BROWSER_CODE
        for name in re.findall(r"\bCloseCode\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text())
    }
    assert used, "no use of CloseCode found: the pattern is stale"
    assert {(file, name) for file, name in used if name not in CloseCode.__members__} == set()
