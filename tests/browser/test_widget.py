"""The <foyer-knock> widget embedded in a page from a second origin."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from playwright.sync_api import Browser, BrowserContext, Route, expect

from tests.browser.conftest import LocalSite, console_url, new_context, screenshot
from tests.support import FoyerProcess


def test_widget_from_another_origin_knocks_and_lands(
    browser: Browser,
    site: LocalSite,
    foyer_web: FoyerProcess,
    context: BrowserContext,
) -> None:
    host: dict[str, Any] = foyer_web.create_host("Ada Lovelace")
    console = context.new_page()
    console.goto(console_url(foyer_web, host["token"]))
    expect(console.locator("#conn")).to_have_text("online")

    partner = new_context(browser)
    errors: list[str] = []
    partner.on("weberror", lambda error: errors.append(str(error.error)))
    try:
        page = partner.new_page()
        query = urlencode(
            {
                "server": foyer_web.http_url,
                "link": host["slug"],
                "options": "title=Demo-request&duration=20",
            }
        )
        page.goto(f"{site.origin}/embed?{query}")
        assert site.origin != foyer_web.http_url
        widget = page.locator("foyer-knock")
        # The page hides every <button>; the widget's own stay visible.
        open_button = widget.locator("button.open")
        expect(open_button).to_be_visible()
        screenshot(page, "widget-closed")
        open_button.click()
        expect(widget.locator("#name")).to_be_focused()
        widget.locator("#name").fill("Partner Visitor")
        widget.locator("#email").fill("visitor@example.com")
        widget.get_by_role("button", name="Knock", exact=True).click()
        expect(widget.locator(".position")).to_have_text("1")
        # The page's `* { color: red; font-family: serif }` stays outside.
        style = widget.locator(".status").evaluate(
            "e => [getComputedStyle(e).color, getComputedStyle(e).fontFamily]"
        )
        assert style[0] != "rgb(255, 0, 0)"
        assert "serif" != style[1].strip()
        screenshot(page, "widget-waiting")

        row = console.locator(".guest-card")
        expect(row.locator(".label")).to_have_text("Partner Visitor (Guest)")
        expect(row.locator(".opts")).to_contain_text("“Demo-request”")
        row.locator("input").fill("Be right there")
        row.locator('[data-action="message"]').click()
        expect(widget.locator(".messages")).to_contain_text("Be right there")
        # The host's state follows the wait (addition host_status).
        console.check('input[name="state"][value="away"]')
        expect(widget.locator(".status")).to_have_text(
            "Ada Lovelace is away for a moment and knows you're here."
        )
        row.locator('[data-action="admit"]').click()
        page.wait_for_url(re.compile(re.escape(site.origin) + r"/meet/.+"))
    finally:
        partner.close()
    assert errors == []


def test_widget_from_an_origin_not_allowed_is_refused(
    browser: Browser,
    site: LocalSite,
    redis_url: str,
) -> None:
    """Same widget, but this Foyer does not list the partner's origin."""
    from tests.support import spawn_foyer

    with spawn_foyer(redis_url) as strict:
        host = strict.create_host("Ada Lovelace")
        partner = new_context(browser)
        try:
            page = partner.new_page()
            query = urlencode({"server": strict.http_url, "link": host["slug"]})
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(f"{site.origin}/embed?{query}")
            widget = page.locator("foyer-knock")
            # It says why at once, instead of "reconnecting..." forever, and never knocks.
            expect(widget).to_have_attribute("data-outcome", "origin_refused")
            expect(widget.locator(".outcome .title")).to_have_text("Not available on this site")
            expect(widget.locator(".outcome .text")).to_contain_text("cannot be used")
            expect(widget.locator("button.open")).to_be_hidden()
            expect(widget.locator(".conn")).to_have_text("")
            screenshot(page, "widget-not-on-this-site")
            assert sockets == []

            # In the visitor's language (the browser's Accept-Language, or lang=).
            page.evaluate("document.querySelector('foyer-knock').setAttribute('lang', 'de')")
            expect(widget.locator(".outcome .title")).to_have_text(
                "Auf dieser Website nicht verfügbar"
            )

            # A stale answer said "allowed" (a cache, a proxy): the refused
            # handshake itself makes the widget ask again, and it stops retrying.
            stale = page.context.new_page()
            asked: list[bool] = []  # per lookup: whether it was answered stale
            pretend = [True]

            def stale_until_the_knock(route: Route) -> None:
                asked.append(pretend[0])
                if not pretend[0]:
                    route.continue_()
                    return
                real = route.fetch()
                route.fulfill(response=real, json={**real.json(), "embed_allowed": True})

            stale.route(re.compile(r".*/api/links/.*"), stale_until_the_knock)
            stale.goto(f"{site.origin}/embed?{query}")
            knock = stale.locator("foyer-knock")
            knock.locator("button.open").click()
            knock.locator("#name").fill("Unwelcome")
            pretend[0] = False
            knock.get_by_role("button", name="Knock", exact=True).click()
            expect(knock).to_have_attribute("data-outcome", "origin_refused")
            expect(knock.locator(".outcome .title")).to_have_text("Not available on this site")
            assert asked[-1] is False  # it asked again after the refused handshake
            assert stale.evaluate("document.querySelector('foyer-knock').client") is None
        finally:
            partner.close()
