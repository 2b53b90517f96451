"""The pages as a chat or a crawler sees them (no script runs): the guest page
titled with the host's name, Open Graph and Twitter tags, the favicon, the
visitor's language, friendly 404/410 pages, and the link's QR code."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.support import FoyerProcess


def _meta(page: str, attr: str, name: str) -> str:
    found = re.search(rf'<meta {attr}="{re.escape(name)}" content="([^"]*)">', page)
    assert found, f"no {name} in the page"
    return html.unescape(found.group(1))


def _title(page: str) -> str:
    found = re.search(r"<title>(.*?)</title>", page, re.S)
    assert found
    return html.unescape(found.group(1))


def test_a_personal_link_unfurls_with_the_host_name(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    r = httpx.get(f"{foyer.http_url}/l/{host['slug']}", timeout=10)
    assert r.status_code == 200
    page = r.text
    assert _title(page) == "Meet with Ada Lovelace · Foyer"
    assert _meta(page, "property", "og:title") == "Meet with Ada Lovelace"
    assert _meta(page, "name", "twitter:title") == "Meet with Ada Lovelace"
    assert _meta(page, "name", "twitter:card") == "summary"
    assert "Ada Lovelace" in _meta(page, "property", "og:description")
    assert _meta(page, "property", "og:url") == f"{foyer.http_url}/l/{host['slug']}"
    assert '<link rel="icon" href="/static/favicon.svg"' in page
    assert '<span id="host-name">Ada Lovelace</span>' in page
    icon = httpx.get(f"{foyer.http_url}/static/favicon.svg", timeout=10)
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"


def test_a_hostile_host_name_is_escaped_everywhere(foyer: FoyerProcess) -> None:
    name = '<script>alert(1)</script>" onload="x {catalogue}'
    host = foyer.create_host(name)
    page = httpx.get(f"{foyer.http_url}/l/{host['slug']}", timeout=10).text
    assert "<script>alert" not in page
    assert 'onload="x' not in page
    assert _meta(page, "property", "og:title") == f"Meet with {name}"
    # Exactly the page's own two scripts: the catalogue (JSON) and guest.js.
    assert page.count("<script") == 2


@pytest.mark.parametrize(
    ("query", "accept", "lang", "title"),
    [
        ("", "fr-CA,fr;q=0.9,en;q=0.5", "fr", "Rencontrer Ada Lovelace"),
        ("", "de", "de", "Treffen mit Ada Lovelace"),
        ("", "es-MX;q=0.8, it;q=0.9", "es", "Reunirse con Ada Lovelace"),
        ("", "it, pt", "en", "Meet with Ada Lovelace"),
        ("?lang=es", "fr", "es", "Reunirse con Ada Lovelace"),
        ("?lang=xx", "de", "de", "Treffen mit Ada Lovelace"),
    ],
)
def test_the_guest_page_speaks_the_visitor_language(
    foyer: FoyerProcess, host: dict[str, Any], query: str, accept: str, lang: str, title: str
) -> None:
    r = httpx.get(
        f"{foyer.http_url}/l/{host['slug']}{query}",
        headers={"Accept-Language": accept},
        timeout=10,
    )
    assert r.status_code == 200
    assert f'<html lang="{lang}">' in r.text
    assert _meta(r.text, "property", "og:title") == title
    assert r.headers["vary"] == "Accept-Language"


def test_unknown_and_retired_links_unfurl_as_such(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    unknown = httpx.get(f"{foyer.http_url}/l/no-one-has-this", timeout=10)
    assert unknown.status_code == 404
    assert _meta(unknown.text, "property", "og:title") == "Unknown link"
    assert 'data-outcome="unknown_link"' in unknown.text

    old = host["slug"]
    with foyer.api() as api:
        changed = api.put(
            f"/api/hosts/{host['id']}/slug",
            json={"slug": "s" + uuid.uuid4().hex[:10], "retire_old": True},
        )
        assert changed.status_code == 200
    retired = httpx.get(f"{foyer.http_url}/l/{old}", headers={"Accept-Language": "fr"}, timeout=10)
    assert retired.status_code == 410
    assert _meta(retired.text, "property", "og:title") == "Lien plus utilisé"
    assert 'data-outcome="retired_link"' in retired.text
    qr = httpx.get(f"{foyer.http_url}/l/{old}/qr.svg", timeout=10)
    assert qr.status_code == 410


def test_the_qr_code_carries_the_link_and_only_valid_options(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    url = f"{foyer.http_url}/l/{host['slug']}/qr.svg"
    plain = httpx.get(url, timeout=10)
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "image/svg+xml"
    assert plain.headers["cache-control"].startswith("public, max-age=")
    assert plain.text.startswith("<svg") and plain.text.rstrip().endswith("</svg>")
    with_options = httpx.get(url, params={"title": "Intro", "duration": "15"}, timeout=10)
    assert with_options.status_code == 200 and with_options.text != plain.text
    # An invalid option changes nothing: it is dropped before the code is drawn.
    junk = httpx.get(url, params={"duration": "9999", "<script>": "1"}, timeout=10)
    assert junk.text == plain.text
    assert httpx.get(f"{foyer.http_url}/l/nobody-here/qr.svg", timeout=10).status_code == 404


def test_the_console_and_the_catalogue_api_speak_it_too(foyer: FoyerProcess) -> None:
    console = httpx.get(f"{foyer.http_url}/host?lang=de", timeout=10)
    assert _title(console.text) == "Foyer-Konsole"
    answer = httpx.get(f"{foyer.http_url}/api/i18n", headers={"Accept-Language": "es"}, timeout=10)
    assert answer.json()["lang"] == "es"
    assert answer.json()["messages"]["widget.knock"] == "Llamar"
    assert answer.headers["access-control-allow-origin"] == "*"
    fr = httpx.get(f"{foyer.http_url}/api/i18n", params={"lang": "fr"}, timeout=10).json()
    assert fr["lang"] == "fr" and fr["messages"]["widget.not_here_heading"].startswith("Indispo")
