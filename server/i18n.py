"""The visitor's language: the catalogues, and which one a request gets.

One catalogue per language, a flat JSON object ``key -> text`` with
``{name}`` placeholders, in ``clients/browser/i18n.<lang>.json``: the pages
render their static text from it here, and the browser scripts get the same
object (embedded in the page, or from ``GET /api/i18n`` for the widget on
another site). Flat JSON rather than Babel/gettext: there are four languages
and no plurals beyond "{n}", the browser needs the strings as JSON anyway, and
a test checks that every catalogue has every key.

The language: ``?lang=`` if it names one we have, else the best
``Accept-Language`` match (``fr-CA`` -> ``fr``), else English.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from server.browser_files import BROWSER_DIR

DEFAULT = "en"
LANGUAGES = ("en", "fr", "de", "es")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def catalogue_path(lang: str) -> Path:
    return BROWSER_DIR / f"i18n.{lang}.json"


@cache
def messages(lang: str) -> dict[str, str]:
    """The catalogue of ``lang`` (one of ``LANGUAGES``), English under it."""
    english: dict[str, str] = json.loads(catalogue_path(DEFAULT).read_text(encoding="utf-8"))
    if lang == DEFAULT or lang not in LANGUAGES:
        return english
    own: dict[str, str] = json.loads(catalogue_path(lang).read_text(encoding="utf-8"))
    return {**english, **own}


def _accepted(header: str) -> list[str]:
    """The languages of an ``Accept-Language`` header, most wanted first."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:30]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def choose(param: str | None, accept_language: str | None) -> str:
    """``?lang=`` when we have it, else the best ``Accept-Language`` match."""
    if param:
        wanted = param.strip().lower().split("-")[0]
        if wanted in LANGUAGES:
            return wanted
    for tag in _accepted(accept_language or ""):
        base = tag.split("-")[0]
        if base in LANGUAGES:
            return base
    return DEFAULT


def t(lang: str, key: str, values: Mapping[str, str] | None = None) -> str:
    """The text of ``key`` in ``lang`` with its placeholders filled (not escaped)."""
    text = messages(lang).get(key, key)
    given = values or {}
    return _PLACEHOLDER.sub(lambda m: given.get(m.group(1), m.group(0)), text)
