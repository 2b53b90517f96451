"""The away email's Admit link, end to end: a real SMTP server receives the
email, the link is taken out of it, Chromium opens it and clicks, and the
guest's socket gets ``admitted`` (issue 12, point 3)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, expect
from websockets.sync.client import connect

from server.ops.embedded import free_port
from tests.browser.conftest import screenshot
from tests.smtp import Inbox, smtp_server
from tests.support import FoyerProcess

ADMIT = re.compile(r"Admit: (http://\S+/reply/\S+)")


@pytest.fixture
def mailing(redis_url: str) -> Iterator[tuple[FoyerProcess, Inbox]]:
    port = free_port()
    with smtp_server() as (inbox, smtp_port):
        env = {
            "FOYER_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "FOYER_MAIL_DELAY": "0.2",
            "FOYER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        proc = FoyerProcess(redis_url, env)
        proc.port = port
        with proc:
            yield proc, inbox


def test_a_host_admits_from_the_email_in_a_browser(
    mailing: tuple[FoyerProcess, Inbox], context: BrowserContext
) -> None:
    foyer, inbox = mailing
    host = foyer.create_host("Mailed Mia", email="mia@example.com")
    with contextlib.ExitStack() as stack:
        guest = stack.enter_context(
            connect(f"{foyer.ws_url}/ws/guest/{host['slug']}", subprotocols=["foyer.v1.json"])  # type: ignore[list-item]
        )
        guest.send(json.dumps({"type": "knock", "name": "Noor"}))
        assert json.loads(guest.recv(timeout=10))["type"] == "waiting"
        deadline = time.monotonic() + 20
        while not inbox.count():
            assert time.monotonic() < deadline, "no email"
            time.sleep(0.05)
        message = inbox.messages[-1]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        match = ADMIT.search(text)
        assert match, text
        # The host reads the HTML part, as a mail client shows it, and clicks its
        # Admit button: the same link as the text part's.
        page = context.new_page()
        page.set_content(message.get_body(("html",)).get_content())  # type: ignore[union-attr]
        expect(page.locator("h1")).to_have_text("Noor (Guest) is waiting for you")
        admit = page.get_by_role("link", name="Admit", exact=True)
        assert admit.get_attribute("href") == match.group(1)
        screenshot(page, "email-away")
        admit.click()
        page.wait_for_url(match.group(1))
        expect(page.locator("#confirm")).to_contain_text("Noor (Guest)")
        page.click("#confirm")
        expect(page.locator("#heading")).to_have_text("Done")
        expect(page.locator("#lead")).to_have_text("Noor (Guest) was admitted.")
        frame = json.loads(guest.recv(timeout=10))
        assert frame["type"] == "admitted" and frame["mode"] == "admit"
