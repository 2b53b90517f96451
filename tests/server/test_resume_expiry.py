"""A dropped guest keeps its place for the resume window, then expires."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from foyer_client import GuestClient, HostClient, UnknownGuest
from protocol.messages import (
    Admitted,
    BusyNotice,
    GuestAway,
    GuestBack,
    GuestLeft,
    JoinRequest,
)
from server.storage.keys import EXPIRY as EXPIRY_KEY
from tests.support import FoyerProcess, spawn_foyer, valkey_server


@pytest.fixture(scope="module")
def short_window(redis_url: str) -> Iterator[FoyerProcess]:
    with spawn_foyer(redis_url, {"FOYER_RESUME_WINDOW": "1.5"}) as proc:
        yield proc


async def test_resume_keeps_id_and_place(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        first = GuestClient(foyer.ws_url, host["slug"], name="Ann")
        await first.__aenter__()
        async with GuestClient(foyer.ws_url, host["slug"], name="Ben") as second:
            gid, resume = first.waiting.guest, first.waiting.resume
            await first.close()  # the connection drops
            away = await device.wait_for(GuestAway)
            assert away.guest == gid
            async with HostClient(foyer.ws_url, host["token"]) as late:
                marks = {g["id"]: g.get("away", False) for g in late.welcome.waiting}
                assert marks == {gid: True, second.waiting.guest: False}
            async with GuestClient(foyer.ws_url, host["slug"], resume=resume) as back:
                assert back.waiting.guest == gid and back.waiting.position == 1
                assert (await device.wait_for(GuestBack)).guest == gid
                assert [m for m in device.pending() if isinstance(m, GuestLeft)] == []
                await device.admit(second.waiting.guest)
                await device.admit(gid)
                assert (await back.wait_for(Admitted)).type == "admitted"


async def test_new_connection_takes_over_a_half_open_one(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with GuestClient(foyer.ws_url, host["slug"], name="Cid") as old:
        async with GuestClient(foyer.ws_url, host["slug"], resume=old.waiting.resume) as new:
            assert new.waiting.guest == old.waiting.guest
            assert await old.wait_closed() == 4409


async def test_resume_after_answer_gets_the_outcome(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        guest = GuestClient(foyer.ws_url, host["slug"], name="Dee")
        await guest.__aenter__()
        resume = guest.waiting.resume
        await guest.close()
        await device.busy(guest.waiting.guest, "call me later")
        async with GuestClient(foyer.ws_url, host["slug"], resume=resume) as back:
            out = await back.wait_for(BusyNotice)
            assert out.message == "call me later"
            assert await back.wait_closed() == 1000


async def test_bad_resume_secret_refused(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with GuestClient(foyer.ws_url, host["slug"], name="Eve") as guest:
        forged = guest.waiting.guest + "~not-the-secret"
        with pytest.raises(UnknownGuest) as err:
            async with GuestClient(foyer.ws_url, host["slug"], resume=forged):
                pass
        assert err.value.close_code == 1008


async def test_dropped_guest_expires_after_window(short_window: FoyerProcess) -> None:
    host = short_window.create_host("Expiry Host")
    async with HostClient(short_window.ws_url, host["token"]) as device:
        guest = GuestClient(short_window.ws_url, host["slug"], name="Fay")
        await guest.__aenter__()
        gid, resume = guest.waiting.guest, guest.waiting.resume
        await guest.close()
        left = await device.wait_for(GuestLeft, timeout=10)
        assert isinstance(left, GuestLeft) and left.guest == gid and left.reason == "expired"
        with pytest.raises(UnknownGuest):
            async with GuestClient(short_window.ws_url, host["slug"], resume=resume):
                pass
        async with HostClient(short_window.ws_url, host["token"]) as later:
            assert later.welcome.waiting == []


async def _expiry_scheduled(redis_url: str, host: str, guest: str) -> None:
    """Until the sweep's schedule holds the guest's deadline (bounded)."""
    redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(10):
            while True:
                if await redis.zscore(EXPIRY_KEY, f"{host}\n{guest}") is not None:
                    return
                await asyncio.sleep(0.02)
    finally:
        await redis.aclose()


async def test_guest_back_in_time_does_not_expire(short_window: FoyerProcess) -> None:
    host = short_window.create_host("Expiry Host 2")
    async with HostClient(short_window.ws_url, host["token"]) as device:
        guest = GuestClient(short_window.ws_url, host["slug"], name="Gus")
        await guest.__aenter__()
        gid = guest.waiting.guest
        await guest.close()
        await _expiry_scheduled(short_window.redis_url, host["id"], gid)
        async with GuestClient(
            short_window.ws_url, host["slug"], resume=guest.waiting.resume
        ) as back:
            # A witness drops after Gus came back, so its deadline is later than
            # Gus's first one; the sweep handles deadlines in order and the host
            # gets the events in order, so the witness's expiry arrives only
            # after Gus's deadline was handled (and after Gus's "left", had he
            # wrongly expired).
            witness = GuestClient(short_window.ws_url, host["slug"], name="Witness")
            await witness.__aenter__()
            await witness.close()
            left = await device.wait_for(GuestLeft, timeout=10)
            assert isinstance(left, GuestLeft)
            assert (left.guest, left.reason) == (witness.waiting.guest, "expired")
            await device.admit(back.waiting.guest)
            assert (await back.wait_for(Admitted)).type == "admitted"


async def test_guests_of_a_crashed_process_expire() -> None:
    # Its own Valkey: every process sharing a store must share these settings.
    env = {"FOYER_RESUME_WINDOW": "1", "FOYER_LEASE": "2"}
    with valkey_server() as valkey, spawn_foyer(valkey.url, env) as survivor:
        env_b = {**env, "FOYER_SECRET": survivor.secret, "FOYER_API_KEY": survivor.api_key}
        with spawn_foyer(valkey.url, env_b) as doomed:
            host = survivor.create_host("Crash Host")
            async with HostClient(survivor.ws_url, host["token"]) as device:
                guest = GuestClient(doomed.ws_url, host["slug"], name="Stranded")
                await guest.__aenter__()
                await device.wait_for(JoinRequest)
                # Killed at once, with no clean-up: the lease must already be stored.
                doomed.stop(signal.SIGKILL)
                try:
                    left = await device.wait_for(GuestLeft, timeout=15)
                except TimeoutError:
                    raise AssertionError(survivor.log() + doomed.log()) from None
                assert isinstance(left, GuestLeft)
                assert (left.guest, left.reason) == (guest.waiting.guest, "expired")
                await guest.close()
