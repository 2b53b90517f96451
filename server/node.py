"""The Node: one Foyer process's parts, built and wired here and nowhere else,
and the background tasks it owns (expiry and lease sweeps, device and guest
leases, email). Every part gets its collaborators in its constructor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from protocol.codec import MAX_FRAME
from server.access.credentials import CredentialBox
from server.access.oauth import AuthorizationServer
from server.access.reply_links import ReplyLinks
from server.access.targets import check_target
from server.access.tokens import Tokens
from server.calendars.sync import CalendarSync, SyncConfig
from server.hosts.directory import Directory
from server.hosts.settings import HostSettings
from server.lobby.broker import Broker
from server.lobby.connection import SocketLimits
from server.lobby.endpoints import EndpointConfig, Lobby
from server.lobby.hub import Hub
from server.lobby.waiting_room import RoomConfig, WaitingRoom
from server.meetings.bookings import Bookings
from server.meetings.connections import Connections
from server.meetings.feed import CalendarFeeds
from server.meetings.planned import PlannedMeetings
from server.meetings.provider import MeetingProvider, Provider, TemplateProvider, WebhookProvider
from server.metrics import Metrics, multiprocess_dir
from server.notify.email import MailConfig, Mailer
from server.notify.webhooks import (
    OutboxEvents,
    WebhookConfig,
    WebhookMeetingEvents,
    Webhooks,
)
from server.ops.config import Settings
from server.ops.gc_policy import GcPolicy
from server.storage import keys, scripts
from server.storage.batcher import Batcher
from server.storage.calendars import CalendarStore
from server.storage.hosts import HostStore
from server.storage.oauth import OAuthStore
from server.storage.outbox import Outbox
from server.storage.redis_client import is_cluster, open_redis
from server.storage.store import Store
from server.storage.webhooks import WebhookStore
from server.tasks import cancel_and_wait
from server.web.context import MeetingsContext, WebContext

log = logging.getLogger("foyer.node")

# WebSocket keep-alive: a peer quiet this long is pinged, and dropped when it
# stays quiet as long again (a dead path; a host device then counts as away).
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
# Seconds between two reads of the hosts' status for their waiting guests.
HOST_STATUS_INTERVAL = 2.0
LOOP_LAG_PERIOD = 0.05  # seconds between two looks at the event loop's lag

GUEST_LEASE_CHUNK = 1000
READY_PING_TIMEOUT = 2.0  # seconds /readyz waits for Redis


class Node:
    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url or not settings.secret or not settings.api_key:
            raise ValueError("Node needs redis_url, secret and api_key (see server.ops.cli)")
        self.settings = settings
        cluster = settings.redis_cluster
        if cluster is None:
            cluster = is_cluster(settings.redis_url)
        self.cluster = cluster
        self.metrics = Metrics(enabled=settings.metrics, multiprocess_dir=multiprocess_dir())
        self.redis = open_redis(settings.redis_url, cluster, settings.redis_pool_size)
        self.batch = Batcher(self.redis, scripts.load(), self.metrics)
        publish = "SPUBLISH" if cluster else "PUBLISH"
        self.store = Store(
            self.batch,
            sharded=cluster,
            lease_ms=int(settings.lease * 1000),
            outbox=bool(settings.webhook_url),
        )
        self.webhooks = Webhooks(
            Outbox(self.batch),
            WebhookStore(self.batch),
            WebhookConfig(
                url=settings.webhook_url,
                secret=settings.webhook_secret,
                allow=settings.webhook_allow_list,
                attempts=settings.webhook_attempts,
                max_age_s=settings.webhook_max_age,
                backoff_s=settings.webhook_backoff,
                backoff_max_s=settings.webhook_backoff_max,
                timeout_s=settings.webhook_timeout,
                claim_s=settings.webhook_claim,
            ),
            switch=self.store.write_outbox,
        )
        self.hosts = HostStore(self.batch, publish_command=publish)
        self.directory = Directory(self.hosts)
        self.broker = Broker(
            self.redis,
            keys.channel,
            knocks_of=keys.knock_channel,
            sharded=cluster,
            unsubscribe_after=settings.unsubscribe_after,
            confirm_timeout=settings.subscribe_timeout,
            metrics=self.metrics,
        )
        self.hub = Hub(self.metrics, settings.position_interval)
        self.tokens = Tokens(settings.secret, settings.token_max_lifetime)
        self.meetings = MeetingProvider(settings.meeting_url)
        # Meeting and booking changes leave as webhooks, through the outbox.
        self.outbox_events = OutboxEvents(Outbox(self.batch), self.webhooks, settings.public_url)
        self.meeting_events = WebhookMeetingEvents(self.outbox_events)
        self.planned = PlannedMeetings(
            self.batch,
            self._providers(settings),
            settings.meeting_provider,
            self.meeting_events,
            id_secret=settings.secret.encode(),
        )
        self.connections = Connections(self.batch)
        self.bookings = Bookings(self.batch, self.connections, self.planned, self.meeting_events)
        self.host_settings = HostSettings(self.hosts, self.directory, settings.region_list)
        base = (settings.public_url or settings.listen_url or "http://127.0.0.1:8000").rstrip("/")
        self.calendars = CalendarStore(self.batch)
        self.calendar_sync = CalendarSync(
            self.calendars,
            CredentialBox(settings.calendar_key, settings.secret),
            self.hosts,
            self.planned,
            SyncConfig(
                interval_s=settings.calendar_interval,
                timeout_s=settings.calendar_timeout,
                lease_s=settings.calendar_lease,
                bases=tuple(dict.fromkeys(b.rstrip("/") for b in self._bases(settings))),
                join_base=base,
                allow=settings.calendar_allow_list,
            ),
            emit=self.outbox_events.emit,
        )
        self.reply_links = ReplyLinks(settings.secret, settings.reply_link_ttl)
        self.mailer = Mailer(
            self.store,
            self.hosts,
            self.reply_links,
            MailConfig(
                smtp_url=settings.smtp_url,
                sender=settings.mail_from,
                delay_s=settings.mail_delay,
                cooldown_s=settings.mail_cooldown,
                console_url=f"{base}/host",
                base_url=base,
                outbox=(
                    settings.data_dir / "outbox"
                    if settings.mail_outbox and not settings.smtp_url
                    else None
                ),
            ),
            self.metrics,
        )
        self.room = WaitingRoom(
            self.store,
            self.directory,
            self.broker,
            self.hub,
            self.meetings,
            self.tokens,
            self.host_settings,
            self.mailer,
            RoomConfig(
                regions=settings.region_list,
                resume_window_ms=int(settings.resume_window * 1000),
                knock_limit=settings.knock_limit,
                link_knock_limit=settings.link_knock_limit,
                resume_limit=settings.resume_limit,
            ),
            self.metrics,
            planned=self.planned,
        )
        self.lobby = Lobby(
            self.room,
            self.directory,
            EndpointConfig(
                origins=settings.origin_list,
                trusted_proxies=settings.proxy_list,
                hello_timeout=settings.hello_timeout,
                limits=SocketLimits(
                    queue_frames=settings.send_queue,
                    queue_bytes=settings.send_queue_bytes,
                    close_timeout=settings.close_timeout,
                    write_timeout=settings.write_timeout,
                    ping_interval=PING_INTERVAL,
                    ping_timeout=PING_TIMEOUT,
                    max_size=MAX_FRAME,
                ),
            ),
            self.metrics,
        )
        self.oauth = AuthorizationServer(OAuthStore(self.batch), self.connections, settings.secret)
        self.web = WebContext(
            store=self.store,
            hosts=self.hosts,
            directory=self.directory,
            host_settings=self.host_settings,
            tokens=self.tokens,
            api_key=settings.api_key,
            public_url=settings.public_url,
            unready=self.unready,
            trusted_proxies=settings.proxy_list,
            link_info_limit=settings.link_info_limit,
            metrics=self.metrics,
            room=self.room,
            reply_links=self.reply_links,
            webhooks=self.webhooks,
            calendar_sync=self.calendar_sync,
            metrics_token=settings.metrics_token,
            oauth=self.oauth,
            allowed_origins=settings.origin_list,
            email_enabled=self.mailer.enabled,
            regions=settings.region_list,
            meeting_provider=self.meetings,
            planned=MeetingsContext(
                meetings=self.planned,
                bookings=self.bookings,
                connections=self.connections,
                feeds=CalendarFeeds(self.batch),
                providers=frozenset(self.planned.providers),
            ),
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Full collections stay short with thousands of sockets open.
        self.gc = GcPolicy(
            freeze_interval=settings.gc_freeze_interval,
            sweep_interval=settings.gc_sweep_interval,
            on_pause=self.metrics.gc_paused,
        )

    @staticmethod
    def _bases(settings: Settings) -> list[str]:
        """Where personal links point: the public URL, and where this listens."""
        found = [u for u in (settings.public_url, settings.listen_url) if u]
        return found or ["http://127.0.0.1:8000"]

    def _providers(self, settings: Settings) -> dict[str, Provider]:
        """The meeting providers this deployment can call, by connection provider
        name: ``foyer`` (an OAuth grant to Foyer itself) makes Foyer's own rooms."""
        template = TemplateProvider(self.meetings)
        providers: dict[str, Provider] = {"template": template, "foyer": template}
        if settings.meeting_webhook_url and settings.meeting_webhook_secret:
            allow = WebhookConfig(allow=settings.webhook_allow_list)

            async def check(url: str) -> None:
                await check_target(url, allow)

            providers["webhook"] = WebhookProvider(
                settings.meeting_webhook_url,
                settings.meeting_webhook_secret,
                check,
                timeout_s=settings.meeting_webhook_timeout,
            )
        elif settings.meeting_provider == "webhook":
            raise ValueError(
                "FOYER_MEETING_PROVIDER=webhook needs FOYER_MEETING_WEBHOOK_URL and _SECRET"
            )
        return providers

    async def start(self) -> None:
        await self.batch.start()
        await self.webhooks.start()  # a refused endpoint stops start-up here
        await self.broker.start(self.room)
        every = self.settings.sweep_interval
        self._tasks = [
            asyncio.create_task(self._every(every, self._sweep), name="foyer-expiry"),
            asyncio.create_task(
                self._every(self.settings.lease / 3, self._lease), name="foyer-leases"
            ),
        ]
        # Calendar rounds in a task of their own: a slow CalDAV server delays nothing else.
        self._tasks.append(
            asyncio.create_task(
                self._every(self.settings.calendar_poll, self.calendar_sync.run_due),
                name="foyer-calendars",
            )
        )
        if self.mailer.enabled:
            # Apart from the expiry sweep, so a slow SMTP server never delays an expiry.
            self._tasks.append(
                asyncio.create_task(self._every(every, self.mailer.send_due), name="foyer-mail")
            )
        # Its own task: a slow receiver delays no sweep, email or knock. It runs
        # with no endpoint too: one may be registered through the API at any time.
        poll = self.settings.webhook_poll
        self._tasks.append(
            asyncio.create_task(self._every(poll, self.webhooks.deliver_due), name="foyer-webhooks")
        )
        self._tasks.append(
            asyncio.create_task(
                self._every(HOST_STATUS_INTERVAL, self._host_status), name="foyer-host-status"
            )
        )
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="foyer-loop-lag"))
        self.gc.start()

    @property
    def draining(self) -> bool:
        return self.lobby.sockets.draining

    async def unready(self) -> str | None:
        """Why this process should get no new traffic, or None (``/readyz``)."""
        if self.draining:
            return "draining"
        if not self.broker.healthy:
            return "the pub/sub reader cannot read"
        try:
            async with asyncio.timeout(READY_PING_TIMEOUT):
                if await self.store.ping():
                    return None
        except Exception:  # RedisError, OSError, TimeoutError: all mean the same here
            pass
        return "the store does not answer"

    async def drain(self, timeout: float) -> int:
        """SIGTERM: refuse new sockets (HTTP 503) and say so on ``/readyz``, close
        every open socket with 1012 and wait, at most ``timeout`` seconds, for
        their clean-up (guests away, with their place kept for a resume on
        another process; devices' leases dropped). Returns the sockets left."""
        sockets = self.lobby.sockets
        log.info("draining: closing %d sockets with 1012", len(sockets))
        sockets.drain()
        try:
            async with asyncio.timeout(timeout):
                await sockets.closed()
        except TimeoutError:
            log.warning("drain deadline: %d sockets still closing", len(sockets))
        return len(sockets)

    async def stop(self) -> None:
        await self.gc.stop()
        await cancel_and_wait(self._tasks)
        await self.lobby.sockets.cancel()
        await self.webhooks.stop()
        await self.room.stop()
        self.hub.stop()
        await self.broker.stop()
        await self.batch.stop()
        await self.redis.aclose()
        self.metrics.close()

    async def _watch_loop(self) -> None:
        """``foyer_event_loop_lag_seconds``: how late a 50 ms timer fires."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LOOP_LAG_PERIOD)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - start - LOOP_LAG_PERIOD))

    @staticmethod
    async def _every(seconds: float, work: Callable[[], Awaitable[object]]) -> None:
        """Run ``work`` every ``seconds``; a failure is logged, never fatal."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except RedisError as exc:
                log.warning("%s failed: %s", getattr(work, "__name__", "sweep"), type(exc).__name__)
            except Exception:
                log.exception("%s failed", getattr(work, "__name__", "sweep"))

    async def _sweep(self) -> None:
        """Expire guests whose resume window passed, and turn away the guests of a
        crashed process (any process may do it; ``due.lua`` hands each entry to
        exactly one), and end the waits that ran past a host's maximum wait."""
        await self.store.expire_due()
        await self.store.time_out_due()
        await self.store.sweep_leases(int(self.settings.resume_window * 1000))

    async def _host_status(self) -> None:
        """Waiting guests hear when their host comes online, goes offline (a
        device closed, or its process died and its lease ran out) or changes
        state (addition ``host_status``): one read per host with guests here.
        A state set on a device reaches them at once (``Hub.dispatch``)."""
        hosts = [host for host, local in self.hub.guests.items() if local]
        self.hub.forget_status(set(hosts))
        for start in range(0, len(hosts), GUEST_LEASE_CHUNK):  # bounded pipelines
            statuses = await self.store.host_statuses(hosts[start : start + GUEST_LEASE_CHUNK])
            for host, (online, state) in statuses.items():
                self.hub.host_status(host, online, state)

    async def _lease(self) -> None:
        """Keep the leases of this process's sockets fresh: a host whose process
        died shows as offline, and its guests are treated as dropped (they may
        resume elsewhere, or expire), once their leases run out."""
        devices = [(s.host, s.device) for d in self.hub.hosts.values() for s in d]
        self.store.devices_refresh(devices)
        guests = [
            (s.host, s.guest, s.conn_id)
            for local in self.hub.guests.values()
            for s in local.values()
            if not s.finished
        ]
        for start in range(0, len(guests), GUEST_LEASE_CHUNK):
            self.store.lease_guests(guests[start : start + GUEST_LEASE_CHUNK])
