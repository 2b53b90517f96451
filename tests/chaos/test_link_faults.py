"""The link between Foyer and Redis fails, not the processes: a proxy of the
suite's own (``proxy.py``) sits between process ``b`` (the guests) and Redis
and adds delay, stalls one direction, black-holes the link or resets it, each
while knocks stream; and it loses the reply of a knock or a reply that Redis
ran (the ambiguous case: sent again, it must apply once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from foyer_client import Admitted, GuestClient, HostClient
from server.ops.embedded import EmbeddedValkey
from server.storage import keys
from tests.chaos.harness import (
    DeviceView,
    KnockStream,
    assert_knock_and_reply_work,
    assert_no_guest_lost,
    assert_views_match,
)
from tests.chaos.proxy import DOWN, UP, FaultProxy
from tests.support import FoyerProcess, spawn_foyer

STREAM = 40


@dataclass
class Rig:
    valkey: EmbeddedValkey
    proxy: FaultProxy
    a: FoyerProcess  # host devices, straight to Redis
    b: FoyerProcess  # guests, through the proxy
    host: dict[str, Any]
    views: list[DeviceView]


@pytest.fixture
def proxied(valkey: EmbeddedValkey) -> Iterator[tuple[FaultProxy, FoyerProcess, FoyerProcess]]:
    with FaultProxy(valkey.port) as proxy, spawn_foyer(valkey.url) as a:
        env = {
            "FOYER_SECRET": a.secret,
            "FOYER_API_KEY": a.api_key,
            "FOYER_REDIS_CLUSTER": "false",
            # Its SIGTERM drain waits on a link the test may have left stalled:
            # 2 s, not the default 10, of the suite's time at teardown.
            "FOYER_DRAIN_TIMEOUT": "2",
        }
        with spawn_foyer(proxy.url, env) as b:
            yield proxy, a, b


@pytest.fixture
async def rig(
    valkey: EmbeddedValkey, proxied: tuple[FaultProxy, FoyerProcess, FoyerProcess]
) -> AsyncIterator[Rig]:
    proxy, a, b = proxied
    host = a.create_host("Link Host")
    async with (
        HostClient(a.ws_url, host["token"]) as d1,
        HostClient(b.ws_url, host["token"]) as d2,
    ):
        yield Rig(valkey, proxy, a, b, host, [DeviceView(d1), DeviceView(d2)])


async def _through(rig: Rig, fault: str) -> None:
    """Knocks stream on ``b``; a quarter in, the fault; then heal and check."""
    stream = KnockStream(rig.b.ws_url, rig.host["slug"], STREAM).start()
    try:
        await stream.wait_attempts(STREAM // 4)
        match fault:
            case "delay":
                rig.proxy.set_delay(0.2)
                await stream.wait_attempts(STREAM // 2)
            case "stall-up" | "stall-down":
                rig.proxy.stall(UP if fault == "stall-up" else DOWN)
                await stream.wait_failures(1)
            case "blackhole":
                rig.proxy.blackhole()
                await stream.wait_failures(1)
            case "reset":
                for _ in range(3):
                    rig.proxy.reset_all()
                    await stream.wait_attempts(stream.attempts + 2)
        rig.proxy.heal()
        await stream.finish()
        queue = await assert_views_match(rig.views, rig.valkey.url, rig.host["id"])
        assert_no_guest_lost(stream, queue)
        for view in rig.views:
            assert not view.extra, "a device was shown a guest twice"
        await assert_knock_and_reply_work(rig.b.ws_url, rig.host["slug"], rig.views)
    finally:
        await stream.close()


@pytest.mark.parametrize("fault", ["delay", "stall-up", "stall-down", "blackhole", "reset"])
async def test_knocks_through_a_failing_link(rig: Rig, fault: str) -> None:
    await _through(rig, fault)


async def test_a_knock_whose_reply_is_lost_is_applied_once(rig: Rig) -> None:
    fired = rig.proxy.reset_after_reply_to(b"Ambiguous Ann")
    async with GuestClient(rig.b.ws_url, rig.host["slug"], name="Ambiguous Ann") as guest:
        assert rig.proxy.fired(fired)  # Redis ran it, the answer never came back
        queue = await assert_views_match(rig.views, rig.valkey.url, rig.host["id"])
        assert queue == {guest.waiting.guest}
        assert guest.waiting.position == 1
        for view in rig.views:
            assert not view.extra, "the knock was announced twice"


async def test_a_reply_whose_answer_is_lost_wins_once(rig: Rig) -> None:
    device = rig.views[1].device  # on b, behind the proxy
    async with GuestClient(rig.a.ws_url, rig.host["slug"], name="Replied") as guest:
        gid = guest.waiting.guest
        await assert_views_match(rig.views, rig.valkey.url, rig.host["id"])
        fired = rig.proxy.reset_after_reply_to(gid.encode())  # b sends it only in the admit
        await device.admit(gid)  # acked: the resent step answered ok
        assert rig.proxy.fired(fired)
        admitted = await guest.wait_for(Admitted)
        assert admitted.type == "admitted"
        await assert_views_match(rig.views, rig.valkey.url, rig.host["id"])


async def test_a_knock_during_a_recovery_is_not_taken_back(valkey: EmbeddedValkey) -> None:
    """Regression: a knock announced live while the recovery's snapshot was in
    flight (taken before the knock) was taken for a guest that left unseen, and
    devices were sent ``guest_left`` for a guest still waiting."""
    with FaultProxy(valkey.port) as proxy, spawn_foyer(valkey.url) as b:
        env = {"FOYER_SECRET": b.secret, "FOYER_API_KEY": b.api_key, "FOYER_REDIS_CLUSTER": "false"}
        with spawn_foyer(proxy.url, env) as a:  # the devices' process, behind the proxy
            host = b.create_host("Recovery Host")
            async with HostClient(a.ws_url, host["token"]) as device:
                view = DeviceView(device)
                seen, gate = proxy.hold_reply_to(f"{keys.tag(host['id'])}:g:\r\n".encode())
                proxy.reset_all()  # pub/sub drops and re-subscribes: a recovery starts
                try:
                    await proxy.until(seen)  # its snapshot went to Redis
                    async with GuestClient(b.ws_url, host["slug"], name="Live") as guest:
                        async with asyncio.timeout(30):  # shown live, by pub/sub
                            while guest.waiting.guest not in view.waiting:
                                await view.next(1.0)
                        proxy.release(gate)  # now the recovery reads its older snapshot
                        # Queued behind the snapshot on a's one Redis connection: once it
                        # is acked, whatever the recovery sent is in the device's inbox.
                        await device.presence("available")
                        await assert_views_match([view], valkey.url, host["id"])
                        assert guest.waiting.guest in view.waiting
                finally:
                    proxy.release(gate)
