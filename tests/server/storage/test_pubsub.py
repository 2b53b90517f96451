"""The dedicated pub/sub reader on real Valkey: confirmations, messages in order
through a burst, a restart and a silent link survived, and on a Cluster, one
connection per shard node and a slot that moves."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from server.lobby.broker import Broker
from server.storage import keys
from server.storage.pubsub import SubscriberConnection, connector
from server.storage.redis_client import open_redis
from tests.support import ValkeyCluster, valkey_server

WAIT_S = 10.0


class Sink:
    """Every callback of a SubscriberConnection, as queues to wait on."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
        self.subscribed: asyncio.Queue[bytes] = asyncio.Queue()
        self.dropped: list[bytes] = []
        self.lost = asyncio.Event()

    def on_message(self, channel: bytes, data: bytes) -> None:
        self.messages.put_nowait((channel, data))

    def on_subscribed(self, channel: bytes) -> None:
        self.subscribed.put_nowait(channel)

    def on_dropped(self, channel: bytes) -> None:
        self.dropped.append(channel)

    def on_lost(self) -> None:
        self.lost.set()

    async def next_subscribed(self) -> bytes:
        return await asyncio.wait_for(self.subscribed.get(), WAIT_S)

    async def next_message(self) -> tuple[bytes, bytes]:
        return await asyncio.wait_for(self.messages.get(), WAIT_S)


class Handler:
    """A BrokerHandler that records what the Broker tells it."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.resubscribed: asyncio.Queue[str] = asyncio.Queue()

    def on_event(self, host: str, data: bytes) -> None:
        self.events.put_nowait((host, data))

    def on_followed(self, host: str) -> None:
        pass

    def on_resubscribed(self, host: str) -> None:
        self.resubscribed.put_nowait(host)


def _subscriber(client: Redis, sink: Sink, **kwargs: float) -> SubscriberConnection:
    pool = client.connection_pool
    return SubscriberConnection(
        connector(pool.connection_class, pool.connection_kwargs),
        on_message=sink.on_message,
        on_subscribed=sink.on_subscribed,
        on_dropped=sink.on_dropped,
        on_lost=sink.on_lost,
        **kwargs,
    )


def _channel() -> str:
    return f"test-pubsub-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


async def test_subscribe_confirm_message_unsubscribe(client: Redis) -> None:
    sink = Sink()
    sub = _subscriber(client, sink)
    await sub.open()
    sub.start()
    first, second = _channel(), _channel()
    try:
        sub.subscribe(first)
        assert await sink.next_subscribed() == first.encode()
        assert await client.publish(first, b"hello") == 1
        assert await sink.next_message() == (first.encode(), b"hello")
        sub.unsubscribe(first)
        sub.subscribe(second)  # answered after the UNSUBSCRIBE: it was read by then
        assert await sink.next_subscribed() == second.encode()
        assert await client.publish(first, b"nobody") == 0
        assert sub.channels == {second}
        assert sink.dropped == []  # an UNSUBSCRIBE we sent is no drop
        assert sub.healthy and not sink.lost.is_set()
    finally:
        await sub.stop()


async def test_a_burst_arrives_complete_and_in_order(client: Redis) -> None:
    """Replies cut across reads (one payload is bigger than a read) are
    reassembled; nothing is lost or reordered; the loop keeps turning."""
    sink = Sink()
    sub = _subscriber(client, sink)
    await sub.open()
    sub.start()
    channel = _channel()
    count = 20_000
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    try:
        sub.subscribe(channel)
        await sink.next_subscribed()
        payloads = [str(i).encode() * (1 + i % 7) for i in range(count)]
        payloads[count // 2] = b"x" * 200_000
        async with client.pipeline(transaction=False) as pipe:
            for data in payloads:
                pipe.publish(channel, data)
            await pipe.execute()
        tick_task = asyncio.create_task(ticker())
        try:
            got = [(await sink.next_message())[1] for _ in range(count)]
        finally:
            tick_task.cancel()
        assert got == payloads
        assert ticks > 0
    finally:
        await sub.stop()


async def test_a_restart_reconnects_and_subscribes_again() -> None:
    with valkey_server() as server:
        client = Redis.from_url(server.url)
        sink = Sink()
        sub = _subscriber(client, sink)
        await sub.open()
        sub.start()
        channel = _channel()
        try:
            sub.subscribe(channel)
            assert await sink.next_subscribed() == channel.encode()
            server.stop()
            await asyncio.wait_for(sink.lost.wait(), WAIT_S)
            assert not sub.healthy
            server.start()
            assert await sink.next_subscribed() == channel.encode()  # on its own
            assert sub.healthy
            assert await client.publish(channel, b"after") == 1
            assert await sink.next_message() == (channel.encode(), b"after")
        finally:
            await sub.stop()
            await client.aclose()


async def test_the_broker_tells_of_a_resubscription_after_a_restart() -> None:
    with valkey_server() as server:
        client = open_redis(server.url, False)
        broker = Broker(client, keys.channel, confirm_timeout=3)
        handler = Handler()
        await broker.start(handler)
        host = f"ps-{uuid.uuid4().hex[:8]}"
        try:
            await broker.hold(host)
            server.stop()
            server.start()
            assert await asyncio.wait_for(handler.resubscribed.get(), WAIT_S) == host
            assert broker.healthy
            await client.publish(keys.channel(host), b"missed?")
            assert await asyncio.wait_for(handler.events.get(), WAIT_S) == (host, b"missed?")
        finally:
            await broker.stop()
            await client.aclose()


async def test_a_silent_link_is_pinged_then_replaced() -> None:
    """Idle, PINGs keep the link; when Redis stops answering (CLIENT PAUSE) the
    reader gives up on it after ``dead_after`` and subscribes again."""
    with valkey_server() as server:
        client = Redis.from_url(server.url)
        sink = Sink()
        sub = _subscriber(client, sink, ping_after=0.1, dead_after=0.6)
        await sub.open()
        sub.start()
        channel = _channel()
        try:
            sub.subscribe(channel)
            await sink.next_subscribed()
            await asyncio.sleep(1.2)  # twice dead_after, idle: only the PINGs are traffic
            assert not sink.lost.is_set()
            await client.execute_command("CLIENT", "PAUSE", 1500, "ALL")
            await asyncio.wait_for(sink.lost.wait(), WAIT_S)
            assert await sink.next_subscribed() == channel.encode()  # after the pause
            assert await client.publish(channel, b"back") == 1
            assert await sink.next_message() == (channel.encode(), b"back")
        finally:
            await client.execute_command("CLIENT", "UNPAUSE")
            await sub.stop()
            await client.aclose()


# -- Cluster: sharded pub/sub ------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[ValkeyCluster]:
    with ValkeyCluster() as c:
        yield c


@pytest.fixture
async def cluster_client(cluster: ValkeyCluster) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.url)
    await client.initialize()
    yield client
    await client.aclose()


def _hosts_on_every_node(client: RedisCluster, nodes: int) -> list[str]:
    """Hosts whose channels spread over every shard node."""
    hosts: list[str] = []
    seen: set[str] = set()
    while len(seen) < nodes or len(hosts) < 2 * nodes:
        host = f"c-{uuid.uuid4().hex[:8]}"
        node = client.get_node_from_key(keys.channel(host))
        assert node is not None
        seen.add(node.name)
        hosts.append(host)
    return hosts


async def test_cluster_one_connection_per_shard_node(
    cluster: ValkeyCluster, cluster_client: RedisCluster
) -> None:
    client = open_redis(cluster.url, True)
    broker = Broker(client, keys.channel, sharded=True, confirm_timeout=5)
    handler = Handler()
    await broker.start(handler)
    try:
        hosts = _hosts_on_every_node(cluster_client, len(cluster.ports))
        await asyncio.gather(*(broker.hold(h) for h in hosts))
        assert len(broker._subscribers) == len(cluster.ports)
        for host in hosts:
            assert await cluster_client.spublish(keys.channel(host), host.encode()) == 1
        got = [await asyncio.wait_for(handler.events.get(), WAIT_S) for _ in hosts]
        assert sorted(got) == sorted((h, h.encode()) for h in hosts)
        assert broker.healthy
    finally:
        await broker.stop()
        await client.aclose()


async def test_cluster_a_slot_that_moves_is_followed(
    cluster: ValkeyCluster, cluster_client: RedisCluster
) -> None:
    """The slot of a held channel migrates to another primary: the old node
    pushes ``sunsubscribe``; the Broker finds the new owner, subscribes there,
    tells its handler (events may have been missed) and delivers again."""
    client = open_redis(cluster.url, True)
    broker = Broker(client, keys.channel, sharded=True, confirm_timeout=5)
    handler = Handler()
    await broker.start(handler)
    host = f"m-{uuid.uuid4().hex[:8]}"
    channel = keys.channel(host)
    slot = cluster_client.keyslot(channel)
    source_node = cluster_client.get_node_from_key(channel)
    assert source_node is not None
    admins = {p: sync_redis.Redis(host="127.0.0.1", port=p) for p in cluster.ports}
    try:
        await broker.hold(host)
        source = admins[int(source_node.port)]
        target = next(a for p, a in admins.items() if p != int(source_node.port))
        source_id, target_id = (
            source.execute_command("CLUSTER", "MYID"),
            target.execute_command("CLUSTER", "MYID"),
        )
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        target.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        assert await asyncio.wait_for(handler.resubscribed.get(), WAIT_S) == host
        publisher = RedisCluster.from_url(cluster.url)
        try:
            await publisher.initialize()
            assert await publisher.spublish(channel, b"moved") == 1
        finally:
            await publisher.aclose()
        assert await asyncio.wait_for(handler.events.get(), WAIT_S) == (host, b"moved")
    finally:
        for admin in admins.values():
            admin.close()
        await broker.stop()
        await client.aclose()
