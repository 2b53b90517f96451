"""The catalogues: every language has every key, with the same placeholders,
and every key the pages and scripts use exists."""

from __future__ import annotations

import json
import re

import pytest

from server import i18n
from server.browser_files import BROWSER_DIR
from server.web.pages import TEMPLATES_DIR

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def _catalogue(lang: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(i18n.catalogue_path(lang).read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_catalogue_has_every_key(lang: str) -> None:
    english, other = _catalogue("en"), _catalogue(lang)
    assert set(other) == set(english), set(other) ^ set(english)
    for key, text in other.items():
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(english[key])), key
        assert text.strip(), key
    if lang != "en":  # translated, not copied (names and units may stay the same)
        same = [k for k in english if other[k] == english[k] and not k.startswith("page.")]
        assert len(same) < len(english) // 10, same


def test_every_key_used_exists() -> None:
    english = _catalogue("en")
    used: set[str] = set()
    for path in TEMPLATES_DIR.glob("*.html"):
        used |= set(re.findall(r"\{t:([a-z_.]+)\}", path.read_text()))
    for path in BROWSER_DIR.glob("*.js"):
        source = path.read_text()
        used |= set(re.findall(r"""\bt\(\s*["'`]([a-z_]+\.[a-z_]+)["'`]""", source))
        used |= set(re.findall(r'data-t="([a-z_.]+)"', source))
        used |= set(
            re.findall(r'"((?:guest|widget|console|link|slug|meet|email)\.[a-z_]+)"', source)
        )
    assert used, "no catalogue key found: the patterns are wrong"
    assert used <= set(english), used - set(english)


@pytest.mark.parametrize(
    ("param", "header", "lang"),
    [
        (None, None, "en"),
        (None, "fr-CA,fr;q=0.9", "fr"),
        (None, "en;q=0.1, de;q=0.8", "de"),
        (None, "it, es;q=0.2", "es"),
        (None, "fr;q=0, de;q=0.5", "de"),
        (None, "garbage;q=x, ;;", "en"),
        ("es", "fr", "es"),
        ("DE-at", None, "de"),
        ("zz", "fr", "fr"),
    ],
)
def test_choose(param: str | None, header: str | None, lang: str) -> None:
    assert i18n.choose(param, header) == lang


def test_t_fills_placeholders_and_falls_back() -> None:
    assert i18n.t("fr", "guest.page_title", {"host": "Ada"}) == "Rencontrer Ada"
    assert i18n.t("de", "no.such.key") == "no.such.key"
    assert i18n.t("xx", "guest.knock") == "Knock"


def test_the_console_offers_every_language_for_email_in_its_own_name() -> None:
    page = (TEMPLATES_DIR / "host.html").read_text(encoding="utf-8")
    select = page.split('<select id="email-language">', 1)[1].split("</select>", 1)[0]
    offered = re.findall(r'<option value="([a-z]+)" lang="\1">([^<]+)</option>', select)
    assert offered == [(lang, i18n.messages(lang)["lang.name"]) for lang in i18n.LANGUAGES]


def test_a_host_may_pick_every_language_for_its_emails_and_no_other() -> None:
    from typing import get_args

    from server.hosts.settings import SettingsPatch

    literal, _none = get_args(SettingsPatch.model_fields["language"].annotation)
    assert get_args(literal) == i18n.LANGUAGES
