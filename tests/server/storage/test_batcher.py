"""The Batcher on a real Valkey: stopping it resolves every future it owns,
the batch in flight included, so no caller waits forever."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.storage.batcher import Batcher
from tests.support import valkey_server


@pytest.fixture
async def named(redis_url: str) -> AsyncIterator[tuple[Redis, str]]:
    """A client whose connections carry a name we can find in CLIENT LIST."""
    name = "batcher-test-" + uuid.uuid4().hex[:8]
    redis = Redis.from_url(redis_url, client_name=name)
    try:
        yield redis, name
    finally:
        await redis.aclose()


async def _blocked(redis_url: str, name: str) -> None:
    """Until Valkey shows the batcher's connection blocked in BLPOP: the
    batch is in flight (bounded; fails the test if it never happens)."""
    probe = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(5):
            while True:
                clients: list[dict[str, Any]] = await probe.client_list()
                if any(c.get("name") == name and c.get("cmd") == "blpop" for c in clients):
                    return
                await asyncio.sleep(0.01)
    finally:
        await probe.aclose()


async def _outcome(fut: asyncio.Future[Any]) -> str:
    """How the future ended; a future left pending fails the test (timeout)."""
    async with asyncio.timeout(2):
        await asyncio.wait([fut])
    if fut.cancelled():
        return "cancelled"
    return "failed" if isinstance(fut.exception(), RedisError) else "result"


async def test_round_trip(named: tuple[Redis, str]) -> None:
    redis, _ = named
    batcher = Batcher(redis, {"echo": "return ARGV[1]"})
    await batcher.start()
    try:
        key = "batcher-test:" + uuid.uuid4().hex
        assert await batcher.call("SET", key, "1", "PX", 10_000) is True
        assert await batcher.call("GET", key) == b"1"
        assert await batcher.script("echo", [key], ["hi"]) == b"hi"
    finally:
        await batcher.stop()


async def test_stop_resolves_the_batch_in_flight(named: tuple[Redis, str], redis_url: str) -> None:
    redis, name = named
    batcher = Batcher(redis, {})
    await batcher.start()
    key = "batcher-test:" + uuid.uuid4().hex
    in_flight = batcher.call("BLPOP", key, 0)  # blocks until stop
    await _blocked(redis_url, name)
    queued = batcher.call("GET", key)  # waits behind the batch in flight
    waiter = asyncio.create_task(_outcome(in_flight))
    await batcher.stop()
    assert in_flight.done()
    assert queued.done()
    assert await waiter == "failed"
    assert await _outcome(queued) == "failed"


async def test_call_after_stop_fails_at_once(named: tuple[Redis, str]) -> None:
    redis, _ = named
    batcher = Batcher(redis, {})
    await batcher.start()
    await batcher.stop()
    assert await _outcome(batcher.call("PING")) == "failed"


async def test_a_later_command_rides_ahead_of_the_next_call(named: tuple[Redis, str]) -> None:
    redis, _ = named
    batcher = Batcher(redis, {})
    await batcher.start()
    try:
        key = "batcher-test:" + uuid.uuid4().hex
        batcher.fire_later("SET", key, "later", "PX", 10_000)
        assert await redis.get(key) is None  # waiting for a batch to ride with
        # Sent before the call asked for after it, in the same batch.
        assert await batcher.call("GET", key) == b"later"
    finally:
        await batcher.stop()


async def test_a_later_command_goes_alone_after_its_delay(named: tuple[Redis, str]) -> None:
    redis, _ = named
    batcher = Batcher(redis, {})
    await batcher.start()
    try:
        key = "batcher-test:" + uuid.uuid4().hex
        batcher.fire_later("SET", key, "alone", "PX", 10_000)
        for _ in range(250):  # LATER_S is 0.2 s; bounded at 5 s
            if await redis.get(key) is not None:
                break
            await asyncio.sleep(0.02)
        assert await redis.get(key) == b"alone"
    finally:
        await batcher.stop()


async def test_a_later_command_is_dropped_quietly_at_stop(
    named: tuple[Redis, str], caplog: pytest.LogCaptureFixture
) -> None:
    redis, _ = named
    batcher = Batcher(redis, {})
    await batcher.start()
    key = "batcher-test:" + uuid.uuid4().hex
    batcher.fire_later("SET", key, "never", "PX", 10_000)
    await batcher.stop()
    await asyncio.sleep(0.3)
    assert await redis.get(key) is None
    assert "redis command failed" not in caplog.text
    batcher.fire_later("SET", key, "after", "PX", 10_000)  # after stop: nothing, no error
    await asyncio.sleep(0.3)
    assert await redis.get(key) is None


async def test_later_commands_on_one_key_go_as_one(redis_url: str) -> None:
    with valkey_server() as own:  # its command counts are this test's alone
        redis = Redis.from_url(own.url)
        batcher = Batcher(redis, {})
        await batcher.start()
        try:
            members = [f"m{i}" for i in range(600)]
            await redis.zadd("leases", {m: 1 for m in members})
            for member in members:
                batcher.fire_later("ZREM", "leases", member)
            await batcher.call("PING")  # they ride ahead of it
            assert await redis.zcard("leases") == 0
            stats = await redis.info("commandstats")
            assert stats["cmdstat_zrem"]["calls"] == 2  # 600 members, 512 per command
        finally:
            await batcher.stop()
            await redis.aclose()
