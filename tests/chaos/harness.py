"""What every chaos test checks after its fault: no waiting guest lost, every
connected device's view equal to the store, and the next knock and reply work.

A ``DeviceView`` folds what a host device was sent (``welcome``,
``join_request``, ``resolved``, ``guest_left``) into the set of guests it shows
as waiting; the store's truth is the host's queue zset. A ``KnockStream``
knocks guests one after another (a few at a time) and keeps every guest that
got ``waiting`` connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import redis

from foyer_client import (
    Admitted,
    FoyerError,
    GuestClient,
    GuestLeft,
    HostClient,
    JoinRequest,
    Resolved,
    Welcome,
)
from server.storage import keys

CONVERGE_S = 30.0  # a bound for behaviour, not a speed: recovery retries with backoff


class DeviceView:
    """A connected host device and the waiting guests it was shown."""

    def __init__(self, device: HostClient) -> None:
        self.device = device
        self.waiting: set[str] = {str(g["id"]) for g in device.welcome.waiting}
        self.extra: list[str] = []  # join_requests for guests it already showed

    def apply(self, message: Any) -> None:
        match message:
            case Welcome(waiting=waiting):
                self.waiting = {str(g["id"]) for g in waiting}
            case JoinRequest(guest=guest):
                if str(guest["id"]) in self.waiting:
                    self.extra.append(str(guest["id"]))
                self.waiting.add(str(guest["id"]))
            case Resolved(guest=gid) | GuestLeft(guest=gid):
                self.waiting.discard(gid)

    async def next(self, timeout: float) -> bool:
        """Apply the next message; False if none came within ``timeout``."""
        try:
            self.apply(await self.device.recv(timeout=timeout))
        except TimeoutError:
            return False
        return True

    def drain(self) -> None:
        for message in self.device.pending():
            self.apply(message)


def store_queue(redis_url: str, host: str) -> set[str]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return {m.decode() for m in client.zrange(f"{keys.tag(host)}:q", 0, -1)}
    finally:
        client.close()


async def assert_views_match(
    views: list[DeviceView], redis_url: str, host: str, timeout: float = CONVERGE_S
) -> set[str]:
    """Wait (bounded) until every device shows exactly the store's queue."""
    deadline = time.monotonic() + timeout
    while True:
        for view in views:
            view.drain()
        expected = store_queue(redis_url, host)
        if all(view.waiting == expected for view in views):
            return expected
        if time.monotonic() > deadline:
            diffs = [
                (sorted(expected - v.waiting)[:5], sorted(v.waiting - expected)[:5]) for v in views
            ]
            raise AssertionError(f"device views differ from the store (missing, extra): {diffs}")
        pending = [asyncio.ensure_future(v.next(0.5)) for v in views]
        await asyncio.gather(*pending)


class KnockStream:
    """Knocks ``total`` guests on ``ws_url``, ``concurrency`` at a time. Guests
    that got ``waiting`` stay connected; refusals during a fault are counted."""

    def __init__(self, ws_url: str, slug: str, total: int, concurrency: int = 4) -> None:
        self.ws_url = ws_url
        self.slug = slug
        self.total = total
        self.concurrency = concurrency
        self.guests: list[GuestClient] = []
        self.failures = 0
        self.attempts = 0
        self.changed = asyncio.Event()
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> KnockStream:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.concurrency)))

    async def _worker(self) -> None:
        while self._next < self.total:
            n = self._next
            self._next += 1
            guest = GuestClient(self.ws_url, self.slug, name=f"Stream {n}")
            try:
                await guest.__aenter__()
            except (FoyerError, OSError, TimeoutError):
                self.failures += 1
            else:
                self.guests.append(guest)
            self.attempts += 1
            self.changed.set()

    async def wait_attempts(self, n: int, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while self.attempts < n and not self.done:
                self.changed.clear()
                await self.changed.wait()

    async def wait_failures(self, n: int, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while self.failures < n and not self.done:
                self.changed.clear()
                await self.changed.wait()

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def finish(self, timeout: float = 120.0) -> None:
        assert self._task is not None
        async with asyncio.timeout(timeout):
            await self._task

    def connected(self) -> list[GuestClient]:
        return [g for g in self.guests if g.close_code is None]

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(g.close() for g in self.guests), return_exceptions=True)


def assert_no_guest_lost(stream: KnockStream, queue: set[str]) -> None:
    """Every guest told ``waiting`` and still connected is in the store's queue."""
    lost = [g.waiting.guest for g in stream.connected() if g.waiting.guest not in queue]
    assert not lost, f"{len(lost)} waiting guests are not in the store: {lost[:5]}"


async def assert_knock_and_reply_work(
    ws_url: str, slug: str, views: list[DeviceView], name: str = "After the fault"
) -> None:
    """The very next knock is shown on every device and the very next reply lands."""
    async with GuestClient(ws_url, slug, name=name) as guest:
        gid = guest.waiting.guest
        for view in views:
            async with asyncio.timeout(CONVERGE_S):
                while gid not in view.waiting:
                    await view.next(1.0)
        await views[0].device.admit(gid)
        assert (await guest.wait_for(Admitted)).type == "admitted"
