"""Redis pub/sub, apart from everything else (centrifuge's Broker).

The Broker owns the subscriptions of this process: one per host channel,
reference-counted by the sockets that follow the host, confirmed by Redis
before a knock may be published, and dropped a while after the last holder
left (a host's devices reconnect often; re-subscribing each time would cost
a round trip per connect). It owns the reader tasks: one for a standalone
Redis, one per shard node on a Cluster (the cluster client's round-robin read
made a message on one node wait for another node's read timeout). It knows
nothing of sockets or frames: it hands raw events to its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from server.metrics import OFF_METRICS, Metrics
from server.tasks import cancel_and_wait

log = logging.getLogger("foyer.broker")

READ_TIMEOUT_S = 1.0
RECONNECT_PAUSE_S = 0.2
YIELD_EVERY = 32  # events handled between two yields to the loop


class BrokerHandler(Protocol):
    def on_event(self, host: str, data: bytes) -> None:
        """A doorbell event arrived on ``host``'s channel."""

    def on_followed(self, host: str) -> None:
        """This process starts to follow ``host``: what it cached may be old."""

    def on_resubscribed(self, host: str) -> None:
        """The channel was subscribed again after a drop: events may be missed."""


class Broker:
    def __init__(
        self,
        redis: Redis,
        channel_of: Callable[[str], str],
        *,
        sharded: bool = False,
        unsubscribe_after: float = 30.0,
        confirm_timeout: float = 5.0,
        metrics: Metrics = OFF_METRICS,
    ) -> None:
        self._metrics = metrics
        self._redis = redis
        self._channel_of = channel_of
        self._sharded = sharded
        self._unsubscribe_after = unsubscribe_after
        self._confirm_timeout = confirm_timeout
        self._handler: BrokerHandler | None = None
        self._pubsub: PubSub | None = None
        self._refs: dict[str, int] = defaultdict(int)
        self._host_of: dict[str, str] = {}
        self._idle_since: dict[str, float] = {}
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._subscribed: set[str] = set()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._shard_nodes: set[str] = set()
        self._failing: set[str] = set()  # readers whose last read failed ("" standalone)
        # One (un)subscribe at a time: redis-py's PubSub opens a connection per
        # concurrent first command and keeps only the last (the others' channels
        # were never read, so their confirmations never came).
        self._commands = asyncio.Lock()

    # -- lifecycle (the Node owns the Broker, the Broker owns its tasks) ---------

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._pubsub = self._redis.pubsub()
        self._tasks = [asyncio.create_task(self._sweep_loop(), name="foyer-unsubscribe")]
        if not self._sharded:
            await self._pubsub.connect()  # type: ignore[no-untyped-call]  # now, not on a knock
            self._tasks.append(asyncio.create_task(self._read_loop(), name="foyer-pubsub"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        for fut in self._confirm.values():
            fut.cancel()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    # -- subscriptions -------------------------------------------------------------

    async def hold(self, host: str) -> None:
        """Take a reference on ``host``'s channel and wait until Redis confirmed the
        subscription. On any failure, timeouts included, the reference is released."""
        channel = self._channel_of(host)
        self._refs[channel] += 1
        self._idle_since.pop(channel, None)
        fut: asyncio.Future[None] | None = None
        try:
            if channel in self._subscribed:
                return
            fut = self._confirm.get(channel)
            if fut is None:
                fut = self._confirm[channel] = asyncio.get_running_loop().create_future()
                self._host_of[channel] = host
                assert self._handler is not None and self._pubsub is not None
                self._handler.on_followed(host)
                async with self._commands:
                    if self._sharded:
                        await self._pubsub.ssubscribe(channel)
                        self._start_shard_readers()
                    else:
                        await self._pubsub.subscribe(channel)
                self._ready.set()
            async with asyncio.timeout(self._confirm_timeout):
                await asyncio.shield(fut)
        except BaseException:
            if fut is not None and self._confirm.get(channel) is fut:
                del self._confirm[channel]  # the next holder subscribes afresh
            self.release(host)
            raise

    @property
    def healthy(self) -> bool:
        """Every reader's last read worked (``/readyz``)."""
        return not self._failing

    def release(self, host: str) -> None:
        channel = self._channel_of(host)
        self._refs[channel] -= 1
        if self._refs[channel] <= 0:
            self._refs.pop(channel, None)
            self._idle_since[channel] = time.monotonic()

    def holders(self, host: str) -> int:
        """How many references this process holds on ``host``'s channel."""
        return self._refs.get(self._channel_of(host), 0)

    async def _sweep_loop(self) -> None:
        """Unsubscribe channels nobody held for ``unsubscribe_after`` seconds."""
        while True:
            await asyncio.sleep(max(self._unsubscribe_after / 3, 0.05))
            try:
                await self.sweep()
            except Exception:
                log.warning("unsubscribe sweep failed", exc_info=True)

    async def sweep(self, now: float | None = None) -> int:
        cutoff = (time.monotonic() if now is None else now) - self._unsubscribe_after
        idle = [c for c, t in self._idle_since.items() if t <= cutoff]
        assert self._pubsub is not None
        for channel in idle:
            self._idle_since.pop(channel, None)
            self._subscribed.discard(channel)
            self._host_of.pop(channel, None)
            self._confirm.pop(channel, None)
            async with self._commands:
                if self._sharded:
                    await self._pubsub.sunsubscribe(channel)
                else:
                    await self._pubsub.unsubscribe(channel)
        return len(idle)

    # -- readers ---------------------------------------------------------------------

    def _start_shard_readers(self) -> None:
        assert self._pubsub is not None
        for name in list(getattr(self._pubsub, "node_pubsub_mapping", {})):
            if name not in self._shard_nodes:
                node = self._redis.get_node(node_name=name)  # type: ignore[attr-defined]
                self._shard_nodes.add(name)
                self._tasks.append(
                    asyncio.create_task(self._read_loop(node), name=f"foyer-pubsub-{name}")
                )

    async def _read_loop(self, node: Any = None) -> None:
        await self._ready.wait()
        assert self._pubsub is not None
        pubsub = self._pubsub
        handled = 0
        reader = "" if node is None else str(getattr(node, "name", node))
        while True:
            try:
                if node is not None:
                    message = await pubsub.get_sharded_message(  # type: ignore[attr-defined]
                        timeout=READ_TIMEOUT_S, target_node=node
                    )
                else:
                    message = await pubsub.get_message(timeout=READ_TIMEOUT_S)
            except Exception:
                log.warning("pub/sub read failed; reconnecting")
                self._metrics.redis_error("pubsub")
                self._failing.add(reader)
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            self._failing.discard(reader)
            if message is None:
                continue
            try:
                self._on_message(message)
            except Exception:
                log.exception("bad event on pub/sub")
            handled += 1
            if handled % YIELD_EVERY == 0:
                # A burst (admit all of a big lobby) arrives already buffered, and
                # reading it never suspends: let the socket writers drain meanwhile.
                await asyncio.sleep(0)

    def _on_message(self, message: dict[str, Any]) -> None:
        assert self._handler is not None
        kind = message["type"]
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        if kind in ("subscribe", "ssubscribe"):
            host = self._host_of.get(channel)
            if channel in self._subscribed and host is not None:
                self._handler.on_resubscribed(host)  # subscribed again after a drop
            self._subscribed.add(channel)
            fut = self._confirm.pop(channel, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        if kind not in ("message", "smessage"):
            return
        host = self._host_of.get(channel)
        if host is not None:
            self._handler.on_event(host, message["data"])
