"""A dedicated meeting's join link in a real browser (issue 13, point 1): the
guest opens ``/m/{id}``, knocks in the host's waiting room, the host's
console shows the meeting's title and time on the guest card, the host
admits, and the guest lands on the dedicated meeting, not the personal room.
A cancelled meeting's join link says so."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.conftest import LocalSite, console_url, new_context, screenshot
from tests.support import FoyerProcess


def test_a_guest_knocks_on_the_join_link_and_lands_on_the_dedicated_meeting(
    browser: Browser,
    site: LocalSite,
    foyer_web: FoyerProcess,
    context: BrowserContext,
    page_errors: list[str],
) -> None:
    host = foyer_web.create_host("Ada Lovelace")
    with foyer_web.api() as api:
        meeting: dict[str, Any] = api.post(
            "/api/meetings",
            json={
                "host": host["id"],
                "title": "Design review",
                "starts_at": "2030-01-01T09:00:00Z",
                "ends_at": "2030-01-01T09:45:00Z",
            },
        ).json()
    console = context.new_page()
    console.goto(console_url(foyer_web, host["token"]))
    expect(console.locator("#conn")).to_have_text("online")
    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        guest.goto(meeting["join_link"])
        guest.wait_for_url(re.compile(rf"/l/{re.escape(host['slug'])}\?s={meeting['id']}$"))
        expect(guest.locator("#host-name")).to_have_text("Ada Lovelace")
        guest.fill("#name", "Grace Hopper")
        guest.click("#knock")
        expect(guest.locator("#position")).to_contain_text("1")
        guest_id = guest.locator("#app").get_attribute("data-guest")

        row = console.locator(f'.guest-card[data-guest="{guest_id}"]')
        expect(row.locator(".opts")).to_contain_text("“Design review”")
        expect(row.locator(".opts")).to_contain_text("planned 2030-01-01 09:00 to 09:45 UTC")
        expect(row.locator(".opts")).to_contain_text("dedicated meeting")
        expect(row.locator(".opts")).to_contain_text("45 min")
        screenshot(console, "console-dedicated-meeting")

        row.locator('[data-action="admit"]').click()
        guest.wait_for_url(f"{site.origin}/meet/{meeting['id']}")
        expect(guest.locator("#meeting")).to_have_text(f"Meeting {meeting['id']}")
    finally:
        guest_ctx.close()

    with foyer_web.api() as api:
        cancelled = api.delete(f"/api/meetings/{meeting['id']}")
        assert cancelled.json()["status"] == "cancelled"
    gone = context.new_page()
    gone.goto(meeting["join_link"])
    expect(gone.locator("h1")).to_have_text("Meeting cancelled")
    expect(gone.locator(".lead")).to_contain_text("“Design review” was cancelled")
    screenshot(gone, "meeting-cancelled")
    assert page_errors == []
