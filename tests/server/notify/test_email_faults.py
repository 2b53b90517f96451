"""The away email under faults: a failed send is retried and does not take the
cool-down; data no email header can carry never gets that far (issue 10, 6)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller

from foyer_client import GuestClient
from server.ops.embedded import free_port
from tests.smtp import Inbox
from tests.support import FoyerProcess, spawn_foyer


@pytest.fixture(scope="module")
def late_smtp_port() -> int:
    return free_port()  # nothing listens there until a test starts a server on it


@pytest.fixture(scope="module")
def mailing_late(redis_url: str, late_smtp_port: int) -> Iterator[FoyerProcess]:
    env = {
        "FOYER_SMTP_URL": f"smtp://127.0.0.1:{late_smtp_port}",
        "FOYER_MAIL_DELAY": "0.3",
        "FOYER_MAIL_COOLDOWN": "300",
    }
    with spawn_foyer(redis_url, env) as proc:
        yield proc


async def test_a_failed_send_is_retried_and_takes_no_cool_down(
    mailing_late: FoyerProcess, late_smtp_port: int
) -> None:
    host = mailing_late.create_host("Away Ada", email="ada@example.com")
    inbox = Inbox()
    async with GuestClient(mailing_late.ws_url, host["slug"], name="Ben"):
        # The first attempts find no SMTP server; the log says so.
        for _ in range(100):
            if "email to host" in mailing_late.log():
                break
            await asyncio.sleep(0.1)
        assert "email to host" in mailing_late.log()
        controller = Controller(inbox, hostname="127.0.0.1", port=late_smtp_port)
        controller.start()
        try:
            for _ in range(100):  # bounded: well within the 300 s cool-down
                if inbox.count():
                    break
                await asyncio.sleep(0.1)
        finally:
            controller.stop()
    assert inbox.count() == 1
    assert inbox.messages[0]["To"] == "ada@example.com"


@pytest.mark.parametrize(
    "body",
    [
        {"id": "crlf-name", "name": "Ada\r\nBcc: evil@example.com"},
        {"id": "crlf-mail", "name": "Ada", "email": "ada@example.com\r\nBcc: evil@example.com"},
        {"id": "nul-name", "name": "Ada\x00"},
    ],
)
def test_a_host_whose_name_or_email_breaks_a_header_is_refused(
    foyer: FoyerProcess, body: dict[str, str]
) -> None:
    with foyer.api() as api:
        r = api.post("/api/hosts", json=body)
    assert r.status_code == 422 and r.json()["code"] == "invalid"


def test_settings_cannot_smuggle_a_header_either(foyer: FoyerProcess) -> None:
    host = foyer.create_host("Plain")
    with foyer.api() as api:
        r = api.patch(f"/api/hosts/{host['id']}/settings", json={"email": "a@b.c\nBcc: x@y.z"})
    assert r.status_code == 422
    assert httpx.get(f"{foyer.http_url}/healthz").status_code == 200
