"""The console's Calendars panel in a real browser, against a real CalDAV
server (Radicale): a wrong password is refused with a clear line, a right one
connects, an event with the personal link gets its own link after "Sync
now", and disconnecting empties the list (issue 15, point 1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.browser.conftest import console_url, screenshot
from tests.caldav_server import Radicale, radicale_server
from tests.server.calendars.test_sync import BASE, ENV, JOIN, _unfold, event
from tests.support import FoyerProcess, spawn_foyer


@pytest.fixture(scope="module")
def dav() -> Iterator[Radicale]:
    with radicale_server({"ada": "ada-pass"}) as server:
        yield server


@pytest.fixture(scope="module")
def foyer_cal(redis_url: str) -> Iterator[FoyerProcess]:
    with spawn_foyer(redis_url, ENV) as proc:
        yield proc


def test_connect_sync_and_disconnect_a_calendar(
    context: BrowserContext, foyer_cal: FoyerProcess, dav: Radicale, page_errors: list[str]
) -> None:
    host = foyer_cal.create_host("Ada Calendars")
    url = dav.calendar("ada", "panel")
    page = context.new_page()
    page.goto(console_url(foyer_cal, host["token"]))
    expect(page.locator("#conn")).to_have_text("online")
    expect(page.locator("#calendars-panel")).to_be_visible()
    expect(page.locator("#calendar-none")).to_be_visible()

    page.fill("#cal-url", url)
    page.fill("#cal-user", "ada")
    page.fill("#cal-pass", "wrong")
    page.click("#cal-connect")
    expect(page.locator("#cal-status")).to_have_text(
        "The calendar server refused this username and password."
    )
    expect(page.locator("#calendar-list li")).to_have_count(0)

    page.fill("#cal-pass", "ada-pass")
    page.click("#cal-connect")
    expect(page.locator("#cal-status")).to_have_text("Calendar connected: it syncs now.")
    expect(page.locator("#cal-pass")).to_have_value("")  # the page keeps no password
    card = page.locator('#calendar-list li[data-name="work"]')
    expect(card).to_be_visible()
    expect(card.locator(".calendar-state")).to_contain_text("0 events seen", timeout=20_000)

    href = f"{url}call.ics"
    assert dav.put("ada", href, event("call@example", f"{BASE}/l/{host['slug']}")) == 201
    card.locator('[data-action="sync"]').click()
    expect(card.locator(".calendar-state")).to_contain_text(
        "1 events seen, 1 given their own link", timeout=20_000
    )
    screenshot(page, "console-calendars")
    stored = dav.get("ada", href)
    assert stored is not None and len(JOIN.findall(_unfold(stored[0]).decode())) == 1

    card.locator('[data-action="disconnect"]').click()
    expect(page.locator("#calendar-list li")).to_have_count(0)
    expect(page.locator("#calendar-none")).to_be_visible()
    assert page_errors == []
