"""The Batcher's pipelined link on a real Valkey (``resp_link.py``): several
batches in flight, replies matched in order, a lost link replaying only what
may run twice, a paused Redis caught by the watchdog, scripts loaded again
after a flush."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.ops.embedded import EmbeddedValkey
from server.storage import batcher as batcher_module
from server.storage.batcher import Batcher
from tests.support import valkey_server

ECHO = {"echo": "return ARGV[1]"}


@pytest.fixture
def own_valkey() -> Iterator[EmbeddedValkey]:
    """A Valkey of this test's own: it gets paused and its clients killed."""
    with valkey_server() as server:
        yield server


@pytest.fixture
async def admin(own_valkey: EmbeddedValkey) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_valkey.url)
    try:
        yield client
    finally:
        await client.aclose()


async def _started(url: str, **settings: Any) -> tuple[Batcher, Redis]:
    name = "link-test-" + uuid.uuid4().hex[:8]
    redis = Redis.from_url(url, client_name=name, **settings)
    batcher = Batcher(redis, dict(ECHO))
    await batcher.start()
    return batcher, redis


async def _until(check: Any) -> None:
    """Poll ``check()`` until true (bounded at 5 s)."""
    async with asyncio.timeout(5):
        while True:
            if check():
                return
            await asyncio.sleep(0.005)


async def test_batches_fly_together_and_replies_keep_their_order(
    own_valkey: EmbeddedValkey, admin: Redis
) -> None:
    batcher, redis = await _started(own_valkey.url)
    try:
        await batcher.call("PING")  # the link is open
        await admin.execute_command("CLIENT", "PAUSE", 400, "ALL")
        first = batcher.call("INCR", "n")
        await _until(lambda: batcher.in_flight == 1)
        second = batcher.call("INCR", "n")  # a later loop pass: a second batch
        third = batcher.script("echo", ["k"], ["three"])
        await _until(lambda: batcher.in_flight == 3)
        assert not first.done()
        assert [await first, await second, await third] == [1, 2, b"three"]
        assert batcher.in_flight == 0
    finally:
        await batcher.stop()
        await redis.aclose()


async def test_a_lost_link_replays_only_what_may_run_twice(
    own_valkey: EmbeddedValkey, admin: Redis
) -> None:
    batcher, redis = await _started(own_valkey.url)
    try:
        await batcher.call("SET", "v", "before")
        blocked = batcher.call("BLPOP", "nothing", 0, replayable=False)
        behind = batcher.call("GET", "v")  # sent behind it on the same link
        await _until(lambda: batcher.in_flight == 2)
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 1
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(blocked, 5)
        assert await asyncio.wait_for(behind, 5) == b"before"  # went again, on a new link
        assert await batcher.call("GET", "v") == b"before"
    finally:
        await batcher.stop()
        await redis.aclose()


async def test_a_paused_redis_is_caught_by_the_watchdog(
    own_valkey: EmbeddedValkey, admin: Redis
) -> None:
    batcher, redis = await _started(own_valkey.url, socket_timeout=0.3)
    try:
        await batcher.call("PING")
        await admin.execute_command("CLIENT", "PAUSE", 1200, "ALL")
        once = batcher.call("SET", "once", "1", "NX", replayable=False)
        again = batcher.call("GET", "once")
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(once, 5)  # may have run: never sent twice
        # The read went again, with backoff, until the pause ended: it gets a
        # reply, not the error. Whether the SET ran is not known to the caller
        # (here Valkey dropped it with the closed connection): why only
        # replayable commands go again.
        assert await asyncio.wait_for(again, 5) == await admin.get("once")
        assert await batcher.call("GET", "once") == await admin.get("once")
    finally:
        await batcher.stop()
        await redis.aclose()


async def test_scripts_come_back_after_a_flush(own_valkey: EmbeddedValkey, admin: Redis) -> None:
    batcher, redis = await _started(own_valkey.url)
    try:
        assert await batcher.script("echo", ["k"], ["a"]) == b"a"
        await admin.script_flush()
        replies = [batcher.script("echo", ["k"], [word]) for word in ("b", "c", "d")]
        assert [await r for r in replies] == [b"b", b"c", b"d"]
    finally:
        await batcher.stop()
        await redis.aclose()


async def test_an_outage_past_the_budget_fails_fast_then_recovers(
    own_valkey: EmbeddedValkey,
) -> None:
    batcher, redis = await _started(own_valkey.url)
    try:
        await batcher.call("PING")
        own_valkey.stop()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(batcher.call("GET", "x"), 15)  # the budget, then the error
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(batcher.call("GET", "x"), 5)  # still down: one try, the error
        own_valkey.start()
        async with asyncio.timeout(10):
            while True:
                try:
                    assert await batcher.call("PING") is True
                    break
                except RedisConnectionError:
                    await asyncio.sleep(0.1)
    finally:
        await batcher.stop()
        await redis.aclose()


async def test_a_full_link_holds_the_queue_until_replies_come(
    own_valkey: EmbeddedValkey, admin: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batcher_module, "MAX_IN_FLIGHT", 2)
    batcher, redis = await _started(own_valkey.url)
    try:
        await batcher.call("PING")
        await admin.execute_command("CLIENT", "PAUSE", 400, "ALL")
        first = batcher.call("INCR", "full")
        await _until(lambda: batcher.in_flight == 1)
        second = batcher.call("INCR", "full")
        await _until(lambda: batcher.in_flight == 2)
        held = [batcher.call("INCR", "full") for _ in range(3)]
        await asyncio.sleep(0.05)  # several loop passes: nothing more leaves
        assert batcher.in_flight == 2
        assert [await f for f in (first, second, *held)] == [1, 2, 3, 4, 5]
    finally:
        await batcher.stop()
        await redis.aclose()
