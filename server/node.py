"""The Node: one Foyer process's parts, wired together, and the background
tasks it owns (pub/sub reader via the Hub, expiry sweep, device leases)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from server.access.tokens import Tokens
from server.hosts.settings import HostSettings
from server.lobby.hub import Hub
from server.lobby.waiting_room import WaitingRoom
from server.meetings.provider import MeetingProvider
from server.notify.email import Mailer
from server.ops.config import Settings
from server.storage.redis_client import is_cluster, open_redis
from server.storage.store import Store

log = logging.getLogger("foyer.node")

SWEEP_EVERY_S = 0.5


class Node:
    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url or not settings.secret or not settings.api_key:
            raise ValueError("Node needs redis_url, secret and api_key (see server.ops.cli)")
        self.settings = settings
        cluster = settings.redis_cluster
        if cluster is None:
            cluster = is_cluster(settings.redis_url)
        self.cluster = cluster
        self.redis = open_redis(settings.redis_url, cluster)
        self.store = Store(self.redis, sharded=cluster, lease_ms=int(settings.lease * 1000))
        self.hub = Hub(self.store, sharded=cluster)
        self.tokens = Tokens(settings.secret)
        self.meetings = MeetingProvider(settings.meeting_url)
        self.waiting_room = WaitingRoom(self)
        self.hub.on_host_change = self.waiting_room.forget_host
        self.settings_service = HostSettings(self)
        self.mailer = Mailer(self)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.start()
        await self.hub.start()
        self._tasks = [
            asyncio.create_task(self._sweep_loop(), name="foyer-expiry"),
            asyncio.create_task(self._lease_loop(), name="foyer-leases"),
        ]
        if self.mailer.enabled:
            self._tasks.append(asyncio.create_task(self._mail_loop(), name="foyer-mail"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.hub.stop()
        await self.store.stop()
        await self.redis.aclose()

    async def _sweep_loop(self) -> None:
        """Expire guests whose resume window passed (any process may do it;
        the ``due`` script hands each entry to exactly one)."""
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                await self.store.expire_due()
                await self.store.sweep_leases(int(self.settings.resume_window * 1000))
            except RedisError as exc:
                log.warning("expiry sweep failed: %s", type(exc).__name__)
            except Exception:
                log.exception("expiry sweep failed")

    async def _mail_loop(self) -> None:
        """Send due emails; apart from the expiry sweep, so a slow SMTP server
        never delays an expiry."""
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                await self.mailer.send_due()
            except Exception:
                log.warning("email sweep failed", exc_info=True)

    async def _lease_loop(self) -> None:
        """Keep the leases of this process's sockets fresh: a host whose process
        died shows as offline, and its guests are treated as dropped (they may
        resume elsewhere, or expire), once their leases run out."""
        while True:
            await asyncio.sleep(self.settings.lease / 3)
            try:
                devices = [(s.host, s.device) for d in self.hub.hosts.values() for s in d]
                self.store.devices_refresh(devices)
                guests = [
                    (s.host, s.guest, s.conn_id)
                    for local in self.hub.guests.values()
                    for s in local.values()
                    if not s.finished
                ]
                for start in range(0, len(guests), 1000):
                    self.store.lease_guests(guests[start : start + 1000])
            except Exception:
                log.exception("lease refresh failed")
