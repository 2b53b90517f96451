"""The guest page and the host console in a real browser, against a real Foyer."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import (
    TIMEOUT_MS,
    LocalSite,
    console_url,
    guest_url,
    new_context,
    screenshot,
)
from tests.support import FoyerProcess


@pytest.fixture
def host(foyer_web: FoyerProcess) -> dict[str, Any]:
    return foyer_web.create_host("Ada Lovelace")


def open_console(context: BrowserContext, foyer: FoyerProcess, token: str) -> Page:
    page = context.new_page()
    page.goto(console_url(foyer, token))
    expect(page.locator("#conn")).to_have_text("online")
    # The token left the address bar (it is kept in this tab's sessionStorage).
    assert "token=" not in page.url
    return page


def knock(page: Page, foyer: FoyerProcess, slug: str, name: str, query: str = "") -> str:
    """Open the guest page, knock, and return the guest id once waiting."""
    page.goto(guest_url(foyer, slug, query))
    expect(page.locator("#host-name")).to_have_text("Ada Lovelace")
    page.fill("#name", name)
    page.click("#knock")
    expect(page.locator("#position")).to_have_text(re.compile(r"^\d"))
    guest = page.locator("#app").get_attribute("data-guest")
    assert guest
    return guest


def card(console: Page, guest: str) -> Any:
    return console.locator(f'.guest-card[data-guest="{guest}"]')


def test_guest_knocks_host_admits_guest_lands_on_meeting(
    browser: Browser,
    site: LocalSite,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    page_errors: list[str],
    context: BrowserContext,
) -> None:
    console = open_console(context, foyer_web, host["token"])
    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        guest.goto(guest_url(foyer_web, host["slug"], "title=Intro-call&duration=15"))
        expect(guest.locator("#host-name")).to_have_text("Ada Lovelace")
        expect(guest.locator("#topic")).to_have_text("Topic: Intro-call")
        screenshot(guest, "guest-form")
        guest.fill("#name", "Grace Hopper")
        guest.fill("#email", "grace@example.com")
        guest.click("#knock")
        expect(guest.locator("#position")).to_contain_text("1")
        guest_id = guest.locator("#app").get_attribute("data-guest")

        row = card(console, str(guest_id))
        expect(row.locator(".label")).to_have_text("Grace Hopper (Guest)")
        expect(row.locator(".email")).to_have_text("grace@example.com")
        expect(row.locator(".opts")).to_contain_text("“Intro-call”")
        expect(row.locator(".opts")).to_contain_text("15 min")
        expect(row.locator(".since")).to_contain_text("waiting")
        expect(console).to_have_title("(1) Foyer console")
        # Merge needs "in a meeting"; the host is available.
        expect(row.locator('[data-action="merge"]')).to_be_disabled()

        row.locator("input").fill("Two minutes, please")
        row.locator('[data-action="message"]').click()
        expect(guest.locator("#messages")).to_contain_text("Two minutes, please")
        screenshot(guest, "guest-waiting")
        screenshot(console, "console-one-guest")

        row.locator('[data-action="admit"]').click()
        guest.wait_for_url(re.compile(re.escape(site.origin) + r"/meet/.+"))
        expect(guest.locator("#meeting")).to_contain_text("Meeting")
        expect(console.locator(".guest-card")).to_have_count(0)
        expect(console).to_have_title("Foyer console")
        screenshot(guest, "guest-in-meeting")
    finally:
        guest_ctx.close()
    assert page_errors == []


@pytest.mark.parametrize(
    ("action", "outcome", "text"),
    [
        ("busy", "busy", "is busy right now"),
        ("deny", "denied", "can't let you in"),
    ],
)
def test_busy_and_deny_reach_the_guest_page(
    browser: Browser,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    context: BrowserContext,
    action: str,
    outcome: str,
    text: str,
) -> None:
    console = open_console(context, foyer_web, host["token"])
    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        guest_id = knock(guest, foyer_web, host["slug"], "Alan Turing")
        row = card(console, guest_id)
        row.locator("input").fill("Try again at three")
        row.locator(f'[data-action="{action}"]').click()
        expect(guest.locator("#app")).to_have_attribute("data-outcome", outcome)
        expect(guest.locator("#outcome-text")).to_contain_text(text)
        expect(guest.locator("#outcome-message")).to_contain_text("Try again at three")
        expect(row).to_have_count(0)
        # Keyboard users land on the new heading.
        expect(guest.locator("#heading")).to_be_focused()
        screenshot(guest, f"guest-{outcome}")
    finally:
        guest_ctx.close()


def test_console_tabs_stay_in_step(
    browser: Browser,
    site: LocalSite,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    context: BrowserContext,
) -> None:
    tab_a = open_console(context, foyer_web, host["token"])
    tab_b = open_console(context, foyer_web, host["token"])
    guest_ctx = new_context(browser)
    try:
        first, second = guest_ctx.new_page(), guest_ctx.new_page()
        first_id = knock(first, foyer_web, host["slug"], "Katherine Johnson")
        second_id = knock(second, foyer_web, host["slug"], "Dorothy Vaughan")
        for tab in (tab_a, tab_b):
            expect(tab.locator(".guest-card")).to_have_count(2)
            expect(tab).to_have_title("(2) Foyer console")

        # Denying in tab A closes the prompt in tab B.
        card(tab_a, first_id).locator('[data-action="deny"]').click()
        expect(card(tab_b, first_id)).to_have_count(0)
        expect(tab_b).to_have_title("(1) Foyer console")
        expect(second.locator("#position")).to_contain_text("1")

        # Status set in tab A reaches tab B; merge is offered there.
        tab_a.check('input[name="state"][value="in_meeting"]')
        tab_a.fill("#meeting-id", "standup-42")
        tab_a.fill("#meeting-url", site.origin + "/meet/standup-42")
        tab_a.fill("#meeting-title", "Stand-up")
        tab_a.click("#presence-set")
        expect(tab_a.locator("#presence-now")).to_contain_text("In a meeting")
        expect(tab_b.locator('input[name="state"][value="in_meeting"]')).to_be_checked()
        merge = card(tab_b, second_id).locator('[data-action="merge"]')
        expect(merge).to_be_enabled()
        screenshot(tab_b, "console-in-meeting")
        merge.click()
        second.wait_for_url(re.compile(re.escape(site.origin) + r"/meet/.+"))
        for tab in (tab_a, tab_b):
            expect(tab.locator(".guest-card")).to_have_count(0)
            expect(tab).to_have_title("Foyer console")
    finally:
        guest_ctx.close()


def test_available_and_away_apply_at_once(
    foyer_web: FoyerProcess, host: dict[str, Any], context: BrowserContext
) -> None:
    """A radio that needed a Set status click too: the lobby settings apply on
    change, and so do Available and Away now. In a meeting asks for the meeting."""
    tab_a = open_console(context, foyer_web, host["token"])
    tab_b = open_console(context, foyer_web, host["token"])
    expect(tab_a.locator("#presence-set")).to_be_hidden()  # nothing to confirm
    tab_a.check('input[name="state"][value="away"]')
    expect(tab_a.locator("#presence-now")).to_have_text("Now: Away")
    expect(tab_b.locator('input[name="state"][value="away"]')).to_be_checked()
    tab_a.check('input[name="state"][value="in_meeting"]')
    expect(tab_a.locator("#meeting-id")).to_be_focused()
    expect(tab_a.locator("#presence-set")).to_be_visible()
    expect(tab_a.locator("#presence-now")).to_have_text("Now: Away")  # not sent yet
    tab_a.fill("#meeting-id", "standup-7")
    tab_a.click("#presence-set")
    expect(tab_b.locator("#presence-now")).to_contain_text("In a meeting")
    tab_a.check('input[name="state"][value="available"]')
    expect(tab_b.locator("#presence-now")).to_have_text("Now: Available")
    expect(tab_b.locator("#presence-set")).to_be_hidden()


def test_the_guest_page_follows_the_host_coming_online_and_away(
    browser: Browser, foyer_web: FoyerProcess, host: dict[str, Any], context: BrowserContext
) -> None:
    """A guest who knocked before the host opened the console read "offline"
    for the whole wait; the page now follows the host (addition host_status)."""
    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        knock(guest, foyer_web, host["slug"], "Early Edith")
        badge = guest.locator("#host-status")
        expect(badge).to_have_text("offline")
        expect(guest.locator("#waiting-text")).to_contain_text("isn't online right now")
        console = open_console(context, foyer_web, host["token"])
        expect(badge).to_have_text("online", timeout=TIMEOUT_MS)
        expect(guest.locator("#waiting-text")).to_have_text(
            "Ada Lovelace knows you're here and will let you in soon."
        )
        console.check('input[name="state"][value="away"]')
        expect(badge).to_have_text("away")
        expect(guest.locator("#waiting-text")).to_have_text(
            "Ada Lovelace is away for a moment and knows you're here."
        )
        console.close()
        expect(badge).to_have_text("offline", timeout=TIMEOUT_MS)
    finally:
        guest_ctx.close()


def test_admit_all(
    browser: Browser,
    site: LocalSite,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    context: BrowserContext,
) -> None:
    console = open_console(context, foyer_web, host["token"])
    guest_ctx = new_context(browser)
    try:
        guests = [guest_ctx.new_page() for _ in range(3)]
        for n, page in enumerate(guests):
            knock(page, foyer_web, host["slug"], f"Guest {n}")
        expect(console.locator(".guest-card")).to_have_count(3)
        screenshot(console, "console-three-guests")
        console.click("#admit-all")
        for page in guests:
            page.wait_for_url(re.compile(re.escape(site.origin) + r"/meet/.+"))
        expect(console.locator(".guest-card")).to_have_count(0)
        expect(console.locator("#admit-all")).to_be_disabled()
    finally:
        guest_ctx.close()


def test_a_dropped_guest_resumes_its_place(
    browser: Browser,
    site: LocalSite,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    context: BrowserContext,
) -> None:
    console = open_console(context, foyer_web, host["token"])
    guest_ctx = new_context(browser)
    try:
        ahead, guest = guest_ctx.new_page(), guest_ctx.new_page()
        knock(ahead, foyer_web, host["slug"], "First in line")
        guest_id = knock(guest, foyer_web, host["slug"], "Second in line")
        expect(guest.locator("#position")).to_have_text("2")

        # Break the socket as a network failure would; the client resumes.
        guest.evaluate("window.foyer.client.drop()")
        expect(guest.locator("#connection")).to_contain_text("kept your place")
        assert guest.locator("#app").get_attribute("data-guest") == guest_id
        expect(guest.locator("#position")).to_have_text("2")

        # And again through the browser going offline and coming back.
        guest_ctx.set_offline(True)
        guest.evaluate("window.foyer.client.drop()")
        expect(guest.locator("#connection")).to_contain_text("reconnecting")
        # The host sees that this guest's connection dropped (guest_away) ...
        expect(card(console, guest_id).locator(".away-note")).to_be_visible()
        screenshot(console, "console-guest-away")
        guest_ctx.set_offline(False)
        expect(guest.locator("#connection")).to_contain_text("kept your place")
        # ... and that it is back (guest_back).
        expect(card(console, guest_id).locator(".away-note")).to_have_count(0)
        assert guest.locator("#app").get_attribute("data-guest") == guest_id
        expect(guest.locator("#position")).to_have_text("2")

        expect(card(console, guest_id)).to_have_count(1)
        card(console, guest_id).locator('[data-action="admit"]').click()
        guest.wait_for_url(re.compile(re.escape(site.origin) + r"/meet/.+"))
    finally:
        guest_ctx.close()


def test_locked_room_and_unknown_link(
    browser: Browser,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    context: BrowserContext,
) -> None:
    console = open_console(context, foyer_web, host["token"])
    expect(console.locator("#policy-form")).to_be_visible()
    console.check("#locked")
    expect(console.locator("#status")).to_contain_text("locked")

    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        guest.goto(guest_url(foyer_web, host["slug"]))
        guest.fill("#name", "Late Comer")
        guest.click("#knock")
        expect(guest.locator("#app")).to_have_attribute("data-outcome", "locked")
        expect(guest.locator("#heading")).to_have_text("Room locked")
        screenshot(guest, "guest-locked")

        guest.goto(guest_url(foyer_web, "no-such-link-here"))
        expect(guest.locator("#app")).to_have_attribute("data-outcome", "unknown_link")
        expect(guest.locator("#heading")).to_have_text("Unknown link")
        screenshot(guest, "guest-unknown-link")
    finally:
        guest_ctx.close()

    answer = httpx.get(guest_url(foyer_web, "not a slug!"), timeout=10)
    assert answer.status_code == 404
    assert "Unknown link" in answer.text
    assert "<script" not in answer.text


def test_guest_page_on_a_phone_with_the_keyboard_only(
    browser: Browser,
    site: LocalSite,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    context: BrowserContext,
) -> None:
    console = open_console(context, foyer_web, host["token"])
    phone = new_context(
        browser,
        viewport={"width": 360, "height": 640},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    try:
        guest = phone.new_page()
        guest.goto(guest_url(foyer_web, host["slug"]))
        expect(guest.locator("#name")).to_be_focused()
        guest.keyboard.press("Enter")  # empty name: an error, focus stays
        expect(guest.locator("#name-error")).to_be_visible()
        guest.keyboard.type("Keyboard User")
        guest.keyboard.press("Tab")
        expect(guest.locator("#email")).to_be_focused()
        guest.keyboard.press("Tab")
        expect(guest.locator("#knock")).to_be_focused()
        guest.keyboard.press("Enter")
        expect(guest.locator("#position")).to_contain_text("1")
        width = guest.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert width <= 0, "the page scrolls sideways on a phone"
        screenshot(guest, "guest-phone-waiting")

        # Leave with the keyboard: the host sees the guest go.
        guest.locator("#cancel").focus()
        guest.keyboard.press("Enter")
        expect(guest.locator("#app")).to_have_attribute("data-outcome", "cancelled")
        expect(console.locator(".guest-card")).to_have_count(0)
    finally:
        phone.close()


def test_pages_say_they_need_javascript(
    browser: Browser, foyer_web: FoyerProcess, host: dict[str, Any]
) -> None:
    # Playwright's "JavaScript off" stops scripts but does not render <noscript>
    # (the parser still runs with scripting on), so read the element itself.
    no_js = new_context(browser, java_script_enabled=False)
    try:
        page = no_js.new_page()
        page.goto(guest_url(foyer_web, host["slug"]))
        notice = page.locator("noscript")
        expect(notice).to_have_count(1)
        assert "This waiting room needs JavaScript" in (notice.text_content() or "")
        expect(page.locator("h1")).to_have_text("Waiting room")
        screenshot(page, "guest-no-javascript")
        page.goto(f"{foyer_web.http_url}/host")
        assert "console needs JavaScript" in (page.locator("noscript").text_content() or "")
    finally:
        no_js.close()


def test_console_token_form_and_refusal(
    browser: Browser, foyer_web: FoyerProcess, host: dict[str, Any], context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(console_url(foyer_web, "not-a-jwt"))
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("refused")
    page.fill("#token", host["token"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#conn")).to_have_text("online")
    expect(page.locator("#who")).to_contain_text("Ada Lovelace")  # welcome.name
    page.reload()  # the token stays in this tab
    expect(page.locator("#conn")).to_have_text("online")


def test_console_panels_stand_apart(
    foyer_web: FoyerProcess, host: dict[str, Any], context: BrowserContext
) -> None:
    """Each panel of the console is a card of its own: a gap between them, none touching."""
    page = open_console(context, foyer_web, host["token"])
    expect(page.locator("#link-panel")).to_be_visible()  # shown once the host record came
    panels = page.locator("#console > .panel:visible")
    boxes = [box for p in panels.all() if (box := p.bounding_box()) is not None]
    assert len(boxes) >= 3
    for upper, lower in itertools.pairwise(boxes):
        assert lower["y"] - (upper["y"] + upper["height"]) >= 8, (upper, lower)


def test_knock_alert_is_throttled_and_mutable(
    browser: Browser,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    context: BrowserContext,
) -> None:
    console = open_console(context, foyer_web, host["token"])
    console.evaluate("window.foyer.alerts.every = 600000")
    guest_ctx = new_context(browser)
    try:
        knock(guest_ctx.new_page(), foyer_web, host["slug"], "One")
        knock(guest_ctx.new_page(), foyer_web, host["slug"], "Two")
        expect(console.locator(".guest-card")).to_have_count(2)
        # Two knocks within the throttle interval: one alert.
        assert console.evaluate("window.foyer.alerts.count") == 1
        console.click("#mute")
        expect(console.locator("#mute")).to_have_attribute("aria-pressed", "true")
        console.evaluate("window.foyer.alerts.last = 0")
        knock(guest_ctx.new_page(), foyer_web, host["slug"], "Three")
        expect(console.locator(".guest-card")).to_have_count(3)
        assert console.evaluate("window.foyer.alerts.count") == 1
    finally:
        guest_ctx.close()


def test_a_guest_whose_place_is_gone_knocks_again(
    browser: Browser, foyer_web: FoyerProcess, host: dict[str, Any], context: BrowserContext
) -> None:
    console = open_console(context, foyer_web, host["token"])
    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        old_id = knock(guest, foyer_web, host["slug"], "Long Gone")
        expect(card(console, old_id)).to_have_count(1)
        # As if the resume window had passed: the server no longer knows the secret.
        guest.evaluate(
            "() => { const c = window.foyer.client;"
            " c.resumeSecret = c.resumeSecret.split('~')[0] + '~stale'; c.drop(); }"
        )
        expect(guest.locator("#connection")).to_contain_text("knocked again")
        expect(guest.locator("#app")).not_to_have_attribute("data-guest", old_id)
        new_id = guest.locator("#app").get_attribute("data-guest")
        assert new_id
        expect(card(console, new_id)).to_have_count(1)
    finally:
        guest_ctx.close()


def test_scheduled_session_link_carries_its_topic(
    foyer_web: FoyerProcess, host: dict[str, Any], context: BrowserContext
) -> None:
    with foyer_web.api() as api:
        r = api.post(
            f"/api/hosts/{host['id']}/sessions",
            json={"title": "Quarterly review", "starts_at": 0, "duration": 90},
        )
    session_link = r.json()["link"]  # /l/{slug}?s=<id>, as an integrator hands it out
    query = session_link.split("?", 1)[1]
    console = open_console(context, foyer_web, host["token"])
    guest = context.new_page()
    guest_id = knock(guest, foyer_web, host["slug"], "Sam", query)
    row = card(console, guest_id)
    expect(row.locator(".opts")).to_contain_text("Quarterly review")
    expect(row.locator(".opts")).to_contain_text("90 min")


def test_a_big_lobby_pages_in_and_shows_the_oldest(
    foyer_web: FoyerProcess, host: dict[str, Any], context: BrowserContext
) -> None:
    """More guests than a welcome lists: the console pages the rest in and counts
    everyone; the list is virtual (the cards near the viewport only), and the
    newest guest is a scroll away."""
    import contextlib

    from websockets.sync.client import connect

    total = 230
    with contextlib.ExitStack() as sockets:
        for n in range(total):
            ws = sockets.enter_context(
                connect(
                    f"{foyer_web.ws_url}/ws/guest/{host['slug']}",
                    subprotocols=["foyer.v1.json"],  # type: ignore[list-item]
                )
            )
            ws.send(f'{{"type": "knock", "name": "Guest {n}"}}')
            assert '"waiting"' in str(ws.recv(timeout=10))
        console = open_console(context, foyer_web, host["token"])
        expect(console.locator("#count")).to_have_text(str(total))
        expect(console.locator(".guest-card").first).to_contain_text("Guest 0")
        shown = console.locator(".guest-card").count()
        assert 0 < shown < 100, shown  # a window of cards, not all of them
        first = console.locator(".guest-card").first
        expect(first).to_have_attribute("aria-setsize", str(total))
        expect(first).to_have_attribute("aria-posinset", "1")
        for _ in range(40):  # bounded: scroll down until the newest guest shows
            if console.locator(".guest-card", has_text=f"Guest {total - 1}").count():
                break
            console.evaluate("window.scrollBy(0, 4000)")
            console.wait_for_timeout(50)
        newest = console.locator(".guest-card", has_text=f"Guest {total - 1}")
        expect(newest).to_have_attribute("aria-posinset", str(total))
        assert console.locator(".guest-card").count() < 100
        expect(console.locator(".guest-card", has_text="Guest 0")).to_have_count(0)


def test_a_guest_of_an_offline_host_nobody_emails_is_not_told_the_host_knows(
    foyer_web: FoyerProcess, host: dict[str, Any], context: BrowserContext
) -> None:
    """No console is open and this Foyer sends no email (no SMTP, no outbox):
    ``waiting.host_notified`` is false, so the page says to stay rather than
    that the host has been told."""
    page = context.new_page()
    knock(page, foyer_web, host["slug"], "Alan")
    expect(page.locator("#host-status")).to_have_text("offline")
    expect(page.locator("#waiting-text")).to_have_text(
        "Ada Lovelace isn't online right now. Stay on this page: "
        "you'll be let in when they're back."
    )
