"""Email to an away host, through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from foyer_client import GuestClient, HostClient
from server.storage.keys import MAIL_DUE as MAIL_KEY
from tests.smtp import Inbox, smtp_server
from tests.support import FoyerProcess, spawn_foyer


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def mailing(redis_url: str, smtp: tuple[Inbox, int]) -> Iterator[FoyerProcess]:
    env = {
        "FOYER_SMTP_URL": f"smtp://127.0.0.1:{smtp[1]}",
        "FOYER_MAIL_DELAY": "1.5",
        "FOYER_MAIL_COOLDOWN": "30",
        "FOYER_MAIL_FROM": "Foyer <foyer@test.example>",
        "FOYER_PUBLIC_URL": "https://foyer.test.example",
    }
    with spawn_foyer(redis_url, env) as proc:
        yield proc


async def _wait_for_mail(inbox: Inbox, count: int, seconds: float = 10) -> None:
    for _ in range(int(seconds * 10)):
        if inbox.count() >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} emails, got {inbox.count()}")


async def _wait_for_mail_to(inbox: Inbox, address: str, seconds: float = 10) -> None:
    for _ in range(int(seconds * 10)):
        with inbox.lock:
            if any(m["To"] == address for m in inbox.messages):
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no email to {address}")


async def _until_scheduled(redis_url: str, host: str, after_ms: float = 0) -> float:
    """Until the mail schedule (``foyer:mail-due``) holds the host with a time
    later than ``after_ms``; returns that time. Bounded: fails the test."""
    redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(10):
            while True:
                due = await redis.zscore(MAIL_KEY, host)
                if due is not None and due > after_ms:
                    return float(due)
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"no email for {host} scheduled after {after_ms}") from None
    finally:
        await redis.aclose()


async def test_one_coalesced_email_when_host_is_away(
    mailing: FoyerProcess, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    before = inbox.count()
    host = mailing.create_host("Away Host", email="away@test.example")
    async with (
        GuestClient(mailing.ws_url, host["slug"], name="Ann", options={"title": "Pricing"}),
        GuestClient(mailing.ws_url, host["slug"], name="Ben"),
        GuestClient(mailing.ws_url, host["slug"], name="Cy"),
    ):
        await _wait_for_mail(inbox, before + 1)
        message = inbox.messages[before]
        assert message["To"] == "away@test.example"
        assert message["Subject"] == "3 guests are waiting for you"
        body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "Ann (Guest)" in body and "Ben (Guest)" in body and "Pricing" in body
        assert "https://foyer.test.example/host" in body and host["token"] not in body
        async with GuestClient(mailing.ws_url, host["slug"], name="Dee"):
            knocked_ms = time.time() * 1000
            # Dee's knock schedules an email 1.5 s on; when it comes due the
            # sweep finds the cool-down and puts it back until the cool-down
            # ends (~28 s on) instead of sending it.
            await _until_scheduled(mailing.redis_url, host["id"], knocked_ms + 10_000)
            assert inbox.count() == before + 1


async def test_no_email_when_a_device_is_online_or_opted_out(
    mailing: FoyerProcess, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    before = inbox.count()
    present = mailing.create_host("Present Host", email="present@test.example")
    quiet = mailing.create_host("Quiet Host", email="quiet@test.example")
    witness = mailing.create_host("Witness Host", email="witness@test.example")
    with mailing.api() as api:
        api.patch(f"/api/hosts/{quiet['id']}/settings", json={"email_notifications": False})
    redis = Redis.from_url(mailing.redis_url)
    try:
        async with (
            HostClient(mailing.ws_url, present["token"]),
            GuestClient(mailing.ws_url, present["slug"], name="Seen"),
            GuestClient(mailing.ws_url, quiet["slug"], name="Unseen"),
        ):
            # Neither is even scheduled: the knock knows the host's email_mode
            # (its settings are cached with the record) and that a device is on.
            assert await redis.zscore(MAIL_KEY, quiet["id"]) is None
            assert await redis.zscore(MAIL_KEY, present["id"]) is None
            # The witness is scheduled later; the sweep handles the schedule in
            # order, one email after the other, so once the witness's email is
            # in, any email for the other two would be in as well.
            async with GuestClient(mailing.ws_url, witness["slug"], name="Witness"):
                await _wait_for_mail_to(inbox, "witness@test.example")
            assert await redis.zscore(MAIL_KEY, quiet["id"]) is None  # the sweep took it
    finally:
        await redis.aclose()
    to = [m["To"] for m in inbox.messages[before:]]
    assert "present@test.example" not in to and "quiet@test.example" not in to


async def test_the_guest_hears_whether_the_host_was_told(
    mailing: FoyerProcess, smtp: tuple[Inbox, int], redis_url: str
) -> None:
    """``waiting.host_notified``: true only when the host gets an email about
    the wait; the guest page says "has been told" only then. A host without an
    address, with email off, or with a device online is not emailed."""
    inbox, _ = smtp
    away = mailing.create_host("Told Host", email="told@test.example")
    no_address = mailing.create_host("Addressless Host")
    opted_out = mailing.create_host("Opted Out Host", email="optout@test.example")
    present = mailing.create_host("Online Host", email="online@test.example")
    with mailing.api() as api:
        r = api.patch(f"/api/hosts/{opted_out['id']}/settings", json={"email_notifications": False})
        assert r.status_code == 200
    async with (
        GuestClient(mailing.ws_url, away["slug"], name="Told") as told,
        GuestClient(mailing.ws_url, no_address["slug"], name="Nobody") as nobody,
        GuestClient(mailing.ws_url, opted_out["slug"], name="Quiet") as quiet,
        HostClient(mailing.ws_url, present["token"]),
        GuestClient(mailing.ws_url, present["slug"], name="Seen") as seen,
    ):
        assert told.waiting.host_notified is True and told.waiting.host_online is False
        assert nobody.waiting.host_notified is False
        assert quiet.waiting.host_notified is False
        assert seen.waiting.host_online is True and seen.waiting.host_notified is False
        await _wait_for_mail_to(inbox, "told@test.example")  # and it was
        redis = Redis.from_url(redis_url)
        try:
            assert await redis.zscore(MAIL_KEY, no_address["id"]) is None  # none scheduled
        finally:
            await redis.aclose()
        # A resume hears it again.
        async with GuestClient(mailing.ws_url, away["slug"], resume=told.waiting.resume) as again:
            assert again.waiting.host_notified is True
            assert again.waiting.host_name == "Told Host"
