"""Issue 14 in a real browser: hold with a countdown on the guest page, the deny
all button, the maximum wait's polite end and the collapsed raid notice."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any
from urllib.parse import urlencode

from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect
from websockets.sync.client import connect

from tests.browser.conftest import LocalSite, new_context, screenshot
from tests.browser.test_pages import card, knock, open_console
from tests.support import FoyerProcess


def _host(foyer: FoyerProcess, **lobby: Any) -> dict[str, Any]:
    host = foyer.create_host("Ada Lovelace")
    if lobby:
        with foyer.api() as api:
            r = api.patch(f"/api/hosts/{host['id']}/settings", json={"lobby": lobby})
            r.raise_for_status()
    return host


def _knock_ws(sockets: contextlib.ExitStack, foyer: FoyerProcess, slug: str, name: str) -> str:
    """Knock from a raw socket (kept open by ``sockets``); the server's first answer."""
    url = f"{foyer.ws_url}/ws/guest/{slug}"
    ws = sockets.enter_context(connect(url, subprotocols=["foyer.v1.json"]))  # type: ignore[list-item]
    ws.send(f'{{"type": "knock", "name": "{name}"}}')
    return str(ws.recv(timeout=10))


def _until(page: Page, expression: str, wanted: object, timeout_s: float = 20) -> None:
    """Poll ``expression`` from Python. (Playwright's wait_for_function polls with
    eval inside the page, which the console's CSP refuses: it failed whenever the
    value was not there at the first look.)"""
    deadline = time.monotonic() + timeout_s
    while (value := page.evaluate(expression)) != wanted:
        assert time.monotonic() < deadline, f"{expression} is {value!r}, not {wanted!r}"
        time.sleep(0.05)


def test_hold_shows_on_the_guest_page_with_a_countdown(
    browser: Browser, foyer_web: FoyerProcess, context: BrowserContext, page_errors: list[str]
) -> None:
    host = _host(foyer_web)
    console = open_console(context, foyer_web, host["token"])
    other_tab = open_console(context, foyer_web, host["token"])
    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        guest_id = knock(guest, foyer_web, host["slug"], "Grace Hopper")
        row = card(console, guest_id)
        row.locator("input").fill("In a call")
        row.locator(".estimate").select_option("600")
        row.locator('[data-action="hold"]').click()

        expect(guest.locator("#app")).to_have_attribute("data-held", "1")
        expect(guest.locator("#held-text")).to_contain_text("“In a call”")
        expect(guest.locator("#held-text")).to_contain_text("You keep your place")
        countdown = guest.locator("#held-countdown")
        expect(countdown).to_have_text(re.compile(r"^About (9:5\d|10:00) left$"))
        first = countdown.inner_text()
        expect(countdown).not_to_have_text(first)  # it counts down, second by second
        expect(guest.locator("#position")).to_contain_text("1")
        screenshot(guest, "guest-held")

        # Every device sees the guest as held, with the time left.
        for tab in (console, other_tab):
            note = card(tab, guest_id).locator(".held-note")
            expect(note).to_contain_text("on hold: “In a call”")
            expect(note).to_contain_text(re.compile(r"\d+:\d\d left"))
            expect(card(tab, guest_id)).to_have_class(re.compile(r"\bheld\b"))
        screenshot(console, "console-held")

        # The host admits later: the held guest goes in.
        # (The page shows "admitted" for 300 ms before it goes: a loaded machine
        # missed that, so the test waits for where it goes.)
        card(other_tab, guest_id).locator('[data-action="admit"]').click()
        guest.wait_for_url(re.compile(r"/meet/foyer-[0-9a-f]+$"))
    finally:
        guest_ctx.close()
    assert page_errors == []


def test_deny_all_turns_everyone_away_with_one_line(
    browser: Browser, foyer_web: FoyerProcess, context: BrowserContext, page_errors: list[str]
) -> None:
    host = _host(foyer_web)
    console = open_console(context, foyer_web, host["token"])
    expect(console.locator("#deny-all")).to_be_disabled()
    guest_ctx = new_context(browser)
    try:
        first, second = guest_ctx.new_page(), guest_ctx.new_page()
        knock(first, foyer_web, host["slug"], "Katherine Johnson")
        knock(second, foyer_web, host["slug"], "Dorothy Vaughan")
        expect(console.locator(".guest-card")).to_have_count(2)
        expect(console.locator("#deny-all")).to_be_enabled()
        console.locator("#bulk-line").fill("Fully booked today, sorry")
        screenshot(console, "console-deny-all")
        asked: list[str] = []

        def answer(dialog: Dialog) -> None:
            asked.append(dialog.message)
            if len(asked) == 1:
                dialog.dismiss()  # a slip of the hand: nobody is turned away
            else:
                dialog.accept()

        console.on("dialog", answer)
        console.locator("#deny-all").click()
        expect(console.locator(".guest-card")).to_have_count(2)
        console.locator("#deny-all").click()
        for guest in (first, second):
            expect(guest.locator("#app")).to_have_attribute("data-outcome", "denied")
            expect(guest.locator("#outcome-message")).to_contain_text("Fully booked today")
        expect(console.locator(".guest-card")).to_have_count(0)
        expect(console.locator("#deny-all")).to_be_disabled()
        expect(console.locator("#status")).to_contain_text("turned away")
        assert asked == ["Turn away everyone waiting (2)?"] * 2
    finally:
        guest_ctx.close()
    assert page_errors == []


def test_the_maximum_wait_ends_politely_on_the_guest_page(
    foyer_web: FoyerProcess, context: BrowserContext, page_errors: list[str]
) -> None:
    host = _host(foyer_web, max_wait_s=1, max_wait_message="Please book a slot instead")
    guest = context.new_page()
    knock(guest, foyer_web, host["slug"], "Alan Turing")
    expect(guest.locator("#app")).to_have_attribute("data-outcome", "timed_out")
    expect(guest.locator("#heading")).to_have_text("Sorry for the wait")
    expect(guest.locator("#outcome-message")).to_contain_text("Please book a slot instead")
    expect(guest.locator("#retry")).to_be_visible()
    screenshot(guest, "guest-timed-out")
    assert page_errors == []


def test_a_raid_collapses_into_one_notice_and_one_click_locks(
    foyer_web: FoyerProcess, context: BrowserContext, page_errors: list[str]
) -> None:
    host = _host(foyer_web, raid_threshold=2)
    console = open_console(context, foyer_web, host["token"])
    console.evaluate("window.foyer.alerts.every = 0")  # without a raid: a ping per knock
    with contextlib.ExitStack() as sockets:
        for n in range(2):
            assert '"waiting"' in _knock_ws(sockets, foyer_web, host["slug"], f"Early {n}")
        _until(console, "window.foyer.alerts.count", 2)
        for n in range(4):
            assert '"waiting"' in _knock_ws(sockets, foyer_web, host["slug"], f"Raider {n}")
        expect(console.locator("#count")).to_have_text("6")
        raid = console.locator("#raid")
        expect(raid).to_be_visible()
        expect(console.locator("#raid-text")).to_have_text(
            re.compile(r"^\d+ new guests in the last minute\.$")
        )
        expect(console.locator("#raid-text")).to_contain_text("3 new guests")
        alerts = console.evaluate("({...window.foyer.alerts})")
        # Four knocks while the notice was up: one raid alert, no ping per knock.
        assert (alerts["count"], alerts["quieted"], alerts["raids"]) == (2, 4, 1)
        screenshot(console, "console-raid")

        console.locator("#raid-autolock").check()  # and next time, by itself
        expect(console.locator("#status")).to_contain_text("lock itself")
        with foyer_web.api() as api:
            settings = api.get(f"/api/hosts/{host['id']}").json()["settings"]
        # What the host set, over the defaults of the rest.
        assert settings["lobby"] == {
            "max_wait_s": 0,
            "max_wait_message": "",
            "raid_threshold": 2,
            "raid_autolock": True,
            "deny_cooldown_s": 0,
        }

        console.locator("#raid-lock").click()
        expect(console.locator("#raid-locked")).to_be_visible()
        expect(console.locator("#locked")).to_be_checked()
        assert '"locked"' in _knock_ws(sockets, foyer_web, host["slug"], "Too late")
    assert page_errors == []


def test_the_widget_shows_a_hold_and_the_maximum_wait(
    browser: Browser, site: LocalSite, foyer_web: FoyerProcess, context: BrowserContext
) -> None:
    held_host = _host(foyer_web)
    timed_host = _host(foyer_web, max_wait_s=1, max_wait_message="Book a slot instead")
    console = open_console(context, foyer_web, held_host["token"])
    partner = new_context(browser)
    errors: list[str] = []
    partner.on("weberror", lambda error: errors.append(str(error.error)))
    try:
        widgets = []
        for host in (held_host, timed_host):
            page = partner.new_page()
            query = urlencode({"server": foyer_web.http_url, "link": host["slug"]})
            page.goto(f"{site.origin}/embed?{query}")
            widget = page.locator("foyer-knock")
            widget.locator("button.open").click()
            widget.locator("#name").fill("Partner Visitor")
            widget.get_by_role("button", name="Knock", exact=True).click()
            widgets.append((page, widget))
        (held_page, held), (timed_page, timed) = widgets
        expect(held.locator(".position")).to_have_text("1")
        row = console.locator(".guest-card")
        row.locator("input").fill("In a call")
        row.locator('[data-action="hold"]').click()
        expect(held.locator(".conn")).to_contain_text("asked you to hold on: “In a call”")
        expect(held.locator(".position")).to_have_text("1")
        screenshot(held_page, "widget-held")

        expect(timed).to_have_attribute("data-outcome", "timed_out")
        expect(timed.locator(".outcome .message")).to_contain_text("Book a slot instead")
        screenshot(timed_page, "widget-timed-out")
    finally:
        partner.close()
    assert errors == []
