"""The guest page, the widget and the console in the visitor's language
(issue 14, point 10): the browser's Accept-Language chooses, ``?lang=`` (or the
widget's ``lang`` attribute) overrides; English otherwise."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import LocalSite, console_url, guest_url, new_context, screenshot
from tests.support import FoyerProcess


@pytest.fixture
def host(foyer_web: FoyerProcess) -> dict[str, Any]:
    return foyer_web.create_host("Ada Lovelace")


def test_guest_page_in_french_from_knock_to_outcome(
    browser: Browser, foyer_web: FoyerProcess, host: dict[str, Any]
) -> None:
    host_ctx = new_context(browser)
    guest_ctx = new_context(browser, locale="fr-FR")
    errors: list[str] = []
    guest_ctx.on("weberror", lambda error: errors.append(str(error.error)))
    try:
        console = host_ctx.new_page()
        console.goto(console_url(foyer_web, host["token"]))
        expect(console.locator("#conn")).to_have_text("online")  # the host reads English

        guest = guest_ctx.new_page()
        guest.goto(guest_url(foyer_web, host["slug"], "title=Bilan"))
        expect(guest).to_have_title("Frapper chez Ada Lovelace · Foyer")
        expect(guest.locator("html")).to_have_attribute("lang", "fr")
        expect(guest.locator('label[for="name"]')).to_have_text("Votre nom")
        expect(guest.locator("#topic")).to_have_text("Sujet : Bilan")
        expect(guest.locator("#host-status")).to_have_text("en ligne")
        screenshot(guest, "guest-fr-form")
        guest.click("#knock")
        expect(guest.locator("#name-error")).to_have_text("Veuillez saisir votre nom.")
        guest.fill("#name", "Marie Curie")
        guest.click("#knock")
        expect(guest.locator("#waiting-text")).to_have_text(
            "Ada Lovelace sait que vous êtes là et va bientôt vous faire entrer."
        )
        expect(guest.locator("#position")).to_have_text("1 (vous êtes le prochain)")
        screenshot(guest, "guest-fr-waiting")

        row = console.locator(".guest-card")
        row.locator("input").fill("Pas aujourd'hui")
        row.locator('[data-action="busy"]').click()
        expect(guest.locator("#heading")).to_have_text("Occupé pour le moment")
        expect(guest.locator("#outcome-text")).to_have_text(
            "Ada Lovelace est occupé(e) pour le moment."
        )
        expect(guest.locator("#retry")).to_have_text("Frapper à nouveau")
        # The host's line in the language's own quotation marks.
        expect(guest.locator("#outcome-message")).to_have_text("« Pas aujourd'hui » — Ada Lovelace")

        # ?lang= wins over the browser's language.
        guest.goto(guest_url(foyer_web, host["slug"], "lang=de"))
        expect(guest.locator("#knock")).to_have_text("Anklopfen")
        expect(guest.locator("#heading")).to_have_text("Bei Ada Lovelace anklopfen")
        guest.goto(guest_url(foyer_web, "nobody-has-this-one"))
        expect(guest.locator("#heading")).to_have_text("Lien inconnu")
    finally:
        guest_ctx.close()
        host_ctx.close()
    assert errors == []


def test_widget_in_spanish_then_german(
    browser: Browser, site: LocalSite, foyer_web: FoyerProcess, host: dict[str, Any]
) -> None:
    partner = new_context(browser, locale="es-ES")
    try:
        page = partner.new_page()
        query = urlencode({"server": foyer_web.http_url, "link": host["slug"]})
        page.goto(f"{site.origin}/embed?{query}")
        widget = page.locator("foyer-knock")
        expect(widget.locator("button.open")).to_have_text("Llamar a Ada Lovelace")
        widget.locator("button.open").click()
        expect(widget.locator('label[for="name"]')).to_have_text("Su nombre")
        widget.locator("#name").fill("Frida")
        widget.get_by_role("button", name="Llamar", exact=True).click()
        expect(widget.locator(".waiting .title")).to_have_text("Esperando a Ada Lovelace")
        expect(widget.locator(".position")).to_have_text("1")
        screenshot(page, "widget-es-waiting")
        widget.get_by_role("button", name="Salir").click()
        expect(widget.locator(".outcome .title")).to_have_text("Ha salido")

        page.evaluate("document.querySelector('foyer-knock').setAttribute('lang', 'de')")
        expect(widget.locator(".again")).to_have_text("Erneut anklopfen")
    finally:
        partner.close()


def test_console_in_german(browser: Browser, foyer_web: FoyerProcess, host: dict[str, Any]) -> None:
    ctx = new_context(browser, locale="de-DE")
    try:
        console = ctx.new_page()
        console.goto(console_url(foyer_web, host["token"]))
        expect(console.locator("#conn")).to_have_text("online")
        expect(console).to_have_title("Foyer-Konsole")
        expect(console.locator("#link-title")).to_have_text("Ihr Link")
        expect(console.locator("#empty")).to_have_text("Niemand wartet.")
        expect(console.locator("#who")).to_have_text("als Ada Lovelace")
        console.fill("#slug-input", "a.b")
        expect(console.locator('#slug-rules li[data-rule="no_periods"]')).to_have_attribute(
            "data-ok", "false"
        )
        expect(console.locator('#slug-rules li[data-rule="no_periods"]')).to_have_text(
            "keine Punkte"
        )
        screenshot(console, "console-de")
        guest = ctx.new_page()
        guest.goto(guest_url(foyer_web, host["slug"]))
        guest.fill("#name", "Lise Meitner")
        guest.click("#knock")
        expect(console.locator(".guest-card .since")).to_contain_text(re.compile(r"wartet seit"))
        expect(console.locator('.guest-card [data-action="admit"]')).to_have_text("Einlassen")
    finally:
        ctx.close()
