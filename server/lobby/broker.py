"""Redis pub/sub, apart from everything else (centrifuge's Broker).

The Broker owns the subscriptions of this process: one per host channel
(two for a host with a device here: its events and its knocks, which a
process of guests does not need), reference-counted by the sockets that
follow the host, confirmed by Redis
before a knock may be published, and dropped a while after the last holder
left (a host's devices reconnect often; re-subscribing each time would cost
a round trip per connect). It owns the subscriber connections
(``server.storage.pubsub``): one for a standalone Redis, one per shard node
that owns a held channel's slot on a Cluster (a message on one node must not
wait for another node's read). It knows nothing of sockets or frames: it
hands raw events to its handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import SlotNotCoveredError

from server.metrics import OFF_METRICS, Metrics
from server.storage.pubsub import (
    RECONNECT_PAUSE_S,
    Connector,
    SubscriberConnection,
    connector,
)
from server.tasks import cancel_and_wait

log = logging.getLogger("foyer.broker")

STANDALONE = ""  # the one subscriber's name on a standalone Redis


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
        knocks_of: Callable[[str], str] | None = None,
        sharded: bool = False,
        unsubscribe_after: float = 30.0,
        confirm_timeout: float = 5.0,
        metrics: Metrics = OFF_METRICS,
    ) -> None:
        self._metrics = metrics
        self._redis = redis
        self._channel_of = channel_of
        self._knocks_of = knocks_of or channel_of
        self._sharded = sharded
        self._unsubscribe_after = unsubscribe_after
        self._confirm_timeout = confirm_timeout
        self._handler: BrokerHandler | None = None
        self._on_event: Callable[[str, bytes], None] | None = None
        self._refs: dict[str, int] = defaultdict(int)
        self._host_of: dict[str, str] = {}  # every channel subscribed or subscribing
        self._host_of_raw: dict[bytes, str] = {}  # the same, keyed as messages name them
        self._idle_since: dict[str, float] = {}
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._subscribed: set[str] = set()
        self._subscribers: dict[str, SubscriberConnection] = {}  # by node name
        self._tasks: list[asyncio.Task[None]] = []
        self._reroute: asyncio.Task[None] | None = None

    # -- lifecycle (the Node owns the Broker, the Broker owns its subscribers) ------

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._on_event = handler.on_event
        self._tasks = [asyncio.create_task(self._sweep_loop(), name="foyer-unsubscribe")]
        if self._sharded:
            await cast(RedisCluster, self._redis).initialize()  # the slot map
            return
        pool = self._redis.connection_pool
        subscriber = self._subscriber(
            STANDALONE, connector(pool.connection_class, pool.connection_kwargs)
        )
        await subscriber.open()  # now, not on a knock
        subscriber.start()
        self._subscribers[STANDALONE] = subscriber

    async def stop(self) -> None:
        tasks = self._tasks + ([self._reroute] if self._reroute is not None else [])
        await cancel_and_wait(tasks)
        for fut in self._confirm.values():
            fut.cancel()
        for subscriber in list(self._subscribers.values()):
            await subscriber.stop()
        self._subscribers.clear()

    # -- subscriptions -------------------------------------------------------------

    def _channel(self, host: str, knocks: bool) -> str:
        return self._knocks_of(host) if knocks else self._channel_of(host)

    async def hold(self, host: str, *, knocks: bool = False) -> None:
        """Take a reference on ``host``'s channel (its knocks channel with
        ``knocks``) and wait until Redis confirmed the subscription. On any
        failure, timeouts included, the reference is released. Without a link to
        Redis the subscription waits for the reconnect (within the same timeout)
        instead of failing at once."""
        channel = self._channel(host, knocks)
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
                self._host_of_raw[channel.encode()] = host
                assert self._handler is not None
                self._handler.on_followed(host)
                self._subscriber_for(channel).subscribe(channel)
            async with asyncio.timeout(self._confirm_timeout):
                await asyncio.shield(fut)
        except BaseException:
            if fut is not None and self._confirm.get(channel) is fut:
                del self._confirm[channel]  # the next holder subscribes afresh
            self.release(host, knocks=knocks)
            raise

    @property
    def healthy(self) -> bool:
        """Every subscriber connection is up or was not lost yet (``/readyz``)."""
        return all(s.healthy for s in self._subscribers.values())

    def release(self, host: str, *, knocks: bool = False) -> None:
        channel = self._channel(host, knocks)
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
        for channel in idle:
            self._idle_since.pop(channel, None)
            self._subscribed.discard(channel)
            self._host_of.pop(channel, None)
            self._host_of_raw.pop(channel.encode(), None)
            self._confirm.pop(channel, None)
            for subscriber in self._subscribers.values():
                if channel in subscriber.channels:
                    subscriber.unsubscribe(channel)
        return len(idle)

    # -- subscriber connections --------------------------------------------------------

    def _subscriber(self, name: str, connect: Connector) -> SubscriberConnection:
        return SubscriberConnection(
            connect,
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
            on_dropped=self._on_dropped,
            on_lost=self._on_lost,
            sharded=self._sharded,
            name=name,
            metrics=self._metrics,
        )

    def _subscriber_for(self, channel: str) -> SubscriberConnection:
        """The connection to the node that owns ``channel`` (started if new)."""
        if not self._sharded:
            return self._subscribers[STANDALONE]
        node = cast(RedisCluster, self._redis).get_node_from_key(channel)
        if node is None:
            raise SlotNotCoveredError(f"no node serves the slot of {channel}")
        subscriber = self._subscribers.get(node.name)
        if subscriber is None:
            subscriber = self._subscriber(
                node.name, connector(node.connection_class, node.connection_kwargs)
            )
            subscriber.start()
            self._subscribers[node.name] = subscriber
        return subscriber

    def _on_message(self, channel: bytes, data: bytes) -> None:
        """The hot path: one dict lookup, one call."""
        host = self._host_of_raw.get(channel)
        if host is not None and self._on_event is not None:
            self._on_event(host, data)

    def _on_subscribed(self, raw: bytes) -> None:
        assert self._handler is not None
        channel = raw.decode()
        host = self._host_of.get(channel)
        if host is None:
            return  # swept while its SUBSCRIBE was under way: not subscribed for long
        if channel in self._subscribed:
            self._handler.on_resubscribed(host)  # subscribed again after a drop
        self._subscribed.add(channel)
        fut = self._confirm.pop(channel, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_dropped(self, raw: bytes) -> None:
        """Redis ended a subscription we hold (a slot migrated): find its node anew."""
        channel = raw.decode()
        if channel not in self._host_of:
            return
        if self._sharded:
            self._request_reroute()
        else:
            self._subscribers[STANDALONE].subscribe(channel)

    def _on_lost(self) -> None:
        if self._sharded:
            self._request_reroute()  # a failover or a MOVED: the slot map may be old

    # -- Cluster: channels follow their slots ------------------------------------------

    def _request_reroute(self) -> None:
        if self._reroute is None or self._reroute.done():
            self._reroute = asyncio.create_task(self._reroute_channels(), name="foyer-reroute")

    async def _reroute_channels(self) -> None:
        """Refresh the slot map, then move every channel whose slot changed node
        (its confirmation on the new node calls ``on_resubscribed``); stop the
        connections to nodes that are gone and hold nothing."""
        await asyncio.sleep(RECONNECT_PAUSE_S)  # let the cluster settle a moment
        cluster = cast(RedisCluster, self._redis)
        try:
            await cluster.nodes_manager.initialize()
        except Exception:
            log.warning("cluster slot map refresh failed", exc_info=True)
            return  # the failing connection asks again after its next attempt
        for channel in list(self._host_of):
            try:
                target = self._subscriber_for(channel)
            except Exception:
                log.warning("no node for %s", channel, exc_info=True)
                continue
            for subscriber in list(self._subscribers.values()):
                if subscriber is not target and channel in subscriber.channels:
                    subscriber.unsubscribe(channel)
            if channel not in target.channels:
                target.subscribe(channel)
        for name, subscriber in list(self._subscribers.items()):
            if not subscriber.channels and cluster.get_node(node_name=name) is None:
                del self._subscribers[name]
                await subscriber.stop()
