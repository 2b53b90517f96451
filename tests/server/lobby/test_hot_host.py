"""A popular link (issue 11, hot host): many guests waiting on one host. Each
guest gets its outcome, none is closed as a slow consumer because of frames
the server itself produced in bulk, and a departure does not send a position
frame to everyone behind it."""

from __future__ import annotations

import asyncio
from typing import Any

from foyer_client import GuestClient, HostClient
from protocol.errors import ConnectionClosed
from protocol.lobby import WELCOME_GUESTS
from protocol.messages import Admitted, Position
from tests.support import FoyerProcess

WAITING = 600  # more than a socket's queue of 256 frames


async def _knock_many(foyer: FoyerProcess, slug: str, n: int) -> list[GuestClient]:
    """``n`` guests knocking, 100 at a time."""
    guests: list[GuestClient] = []
    for start in range(0, n, 100):
        batch = [
            GuestClient(foyer.ws_url, slug, name=f"G{i}") for i in range(start, min(n, start + 100))
        ]
        await asyncio.gather(*(g.__aenter__() for g in batch))
        guests += batch
    return guests


async def test_admit_all_of_many_reaches_every_guest(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    guests: list[GuestClient] = []
    try:
        async with HostClient(foyer.ws_url, host["token"]) as device:
            guests = await _knock_many(foyer, host["slug"], WAITING)
            await device.admit_all()
            outcomes = await asyncio.gather(
                *(g.wait_for(Admitted, timeout=60) for g in guests), return_exceptions=True
            )
            lost = [o for o in outcomes if not isinstance(o, Admitted)]
            assert lost == [], f"{len(lost)} guests got no outcome: {lost[:3]}"
            closes = await asyncio.gather(*(g.wait_closed(timeout=30) for g in guests))
            assert set(closes) == {1000}
    finally:
        await asyncio.gather(*(g.close() for g in guests), return_exceptions=True)


async def test_departures_are_coalesced_into_few_position_frames(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    n = 300
    guests: list[GuestClient] = []
    try:
        async with HostClient(foyer.ws_url, host["token"]) as device:
            guests = await _knock_many(foyer, host["slug"], n)
            guests.sort(key=lambda g: g.waiting.position)  # the queue's order
            last = guests[-1]
            ahead = [g.waiting.guest for g in guests[:-1]]
            for gid in ahead[:200]:  # 200 departures ahead of the last guest, one by one
                await device.admit(gid)
            # The last guest ends at its exact place once the queue is quiet ...
            position, frames = 0, 0
            while position != n - 200:
                message = await last.wait_for(Position, timeout=10)
                position, frames = message.position, frames + 1
            # ... after far fewer frames than departures (one per interval at most).
            assert frames < 50, frames
    except ConnectionClosed as exc:  # a slow-consumer close would land here
        raise AssertionError(f"the last guest was closed ({exc.close_code})") from exc
    finally:
        await asyncio.gather(*(g.close() for g in guests), return_exceptions=True)


async def test_the_welcome_is_bounded_and_the_rest_is_paged(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    guests = await _knock_many(foyer, host["slug"], WELCOME_GUESTS * 2 + 7)
    guests.sort(key=lambda g: g.waiting.position)  # the queue's order: knocks ran concurrently
    try:
        async with HostClient(foyer.ws_url, host["token"]) as device:
            welcome = device.welcome
            assert welcome.waiting_total == len(guests)
            assert [g["id"] for g in welcome.waiting] == [
                g.waiting.guest for g in guests[:WELCOME_GUESTS]
            ]
            everyone = await device.all_waiting()
            assert [g["id"] for g in everyone] == [g.waiting.guest for g in guests]
            last = guests[-1]  # never listed in the welcome: a reply still works
            await device.admit(last.waiting.guest)
            assert (await last.wait_for(Admitted)).meeting["title"]
    finally:
        await asyncio.gather(*(g.close() for g in guests), return_exceptions=True)
