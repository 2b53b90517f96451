"""Pub/sub reader CPU per message: redis-py's PubSub against our own reader (issue 11).

    python -m loadtest.pubsub_bench --messages 50000

In one run, on one Valkey (its own, or ``--redis-url``), for each reader path in
turn (``--rounds`` times, alternating): a publisher *process* sends
``--messages`` PUBLISHes (pipelined) on one channel while this process reads
them; the figure is this process's CPU time (``time.process_time``: the
publisher's CPU is not in it) from the first message handed over to the last,
divided by the messages after the first (wall time likewise).

- ``redis-py``: the read loop the Broker had, ``PubSub.get_message(timeout=1.0)``
  and its dict dispatch, on the client ``open_redis`` builds.
- ``foyer``: the Broker as it is now, on ``server.storage.pubsub``.

Both hand each event to the same trivial handler and yield every 32 events.
Every path is bounded in count and time (``--timeout``). Loopback only. Not a
test: figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from server.lobby.broker import Broker
from server.ops.embedded import EmbeddedValkey
from server.storage import keys
from server.storage.pubsub import YIELD_EVERY
from server.storage.redis_client import open_redis

PIPELINE = 1000  # PUBLISHes per round trip of the publisher
OLD_READ_TIMEOUT_S = 1.0  # what the Broker passed to get_message


@dataclass
class Figure:
    path: str
    messages: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_s / self.messages * 1e6


class Counter:
    """The handler both paths feed: counts, and wakes the bench at the end."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = (0.0, 0.0)  # (CPU, wall) when the first message was handed over
        self.done = asyncio.Event()

    def on_event(self, host: str, data: bytes) -> None:
        self.count += 1
        if self.count == 1:
            self.first = (time.process_time(), time.perf_counter())
        if self.count >= self.expected:
            self.done.set()

    def on_followed(self, host: str) -> None:
        pass

    def on_resubscribed(self, host: str) -> None:
        pass


def publish(url: str, channel: str, messages: int, size: int) -> None:
    """The publisher process: ``messages`` PUBLISHes, ``PIPELINE`` per round trip."""
    client = redis.Redis.from_url(url)
    payload = b"e" * size
    try:
        sent = 0
        while sent < messages:
            pipe = client.pipeline(transaction=False)
            for _ in range(min(PIPELINE, messages - sent)):
                pipe.publish(channel, payload)
            pipe.execute()
            sent += PIPELINE
    finally:
        client.close()


async def _measure(
    path: str, counter: Counter, channel: str, args: argparse.Namespace, url: str
) -> Figure:
    cmd = [sys.executable, "-m", "loadtest.pubsub_bench", "--publish", url, channel]
    cmd += ["--messages", str(args.messages), "--size", str(args.size)]
    publisher = await asyncio.create_subprocess_exec(*cmd)
    try:
        async with asyncio.timeout(args.timeout):
            await counter.done.wait()
        cpu = time.process_time() - counter.first[0]
        wall = time.perf_counter() - counter.first[1]
    finally:
        try:
            async with asyncio.timeout(args.timeout):
                await publisher.wait()
        except TimeoutError:
            publisher.kill()
            await publisher.wait()
    return Figure(path, counter.count - 1, cpu, wall)  # the ones after the first


async def old_path(url: str, args: argparse.Namespace) -> Figure:
    """The Broker's read loop before this module: one ``get_message`` per message."""
    client = open_redis(url, False)
    pubsub = client.pubsub()
    host = "bench-old"
    channel = keys.channel(host)
    counter = Counter(args.messages)
    host_of = {channel: host}
    handler: Callable[[str, bytes], None] = counter.on_event

    def on_message(message: dict[str, Any]) -> None:  # the old Broker._on_message
        kind = message["type"]
        name = message["channel"]
        name = name.decode() if isinstance(name, bytes) else name
        if kind not in ("message", "smessage"):
            return
        found = host_of.get(name)
        if found is not None:
            handler(found, message["data"])

    async def read() -> None:
        handled = 0
        while True:
            message = await pubsub.get_message(timeout=OLD_READ_TIMEOUT_S)
            if message is None:
                continue
            on_message(message)
            handled += 1
            if handled % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    await pubsub.subscribe(channel)
    confirmed = await pubsub.get_message(timeout=5)
    assert confirmed is not None and confirmed["type"] == "subscribe"
    reader = asyncio.create_task(read())
    try:
        return await _measure("redis-py", counter, channel, args, url)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def new_path(url: str, args: argparse.Namespace) -> Figure:
    client = open_redis(url, False)
    broker = Broker(client, keys.channel)
    counter = Counter(args.messages)
    await broker.start(counter)
    try:
        host = "bench-new"
        await broker.hold(host)
        return await _measure("foyer", counter, keys.channel(host), args, url)
    finally:
        await broker.stop()
        await client.aclose()


@contextlib.contextmanager
def _valkey(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="foyer-pubsub-bench-") as tmp:
        with EmbeddedValkey(Path(tmp), persist=False) as server:
            admin = redis.Redis.from_url(server.url)
            # A slow reader must not be cut off mid-run: no pub/sub buffer limit.
            admin.config_set("client-output-buffer-limit", "pubsub 0 0 0")
            admin.close()
            yield server.url


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[Figure] = []
    with _valkey(args.redis_url) as url:
        for _ in range(args.rounds):
            rounds.append(await old_path(url, args))
            rounds.append(await new_path(url, args))
    summary = {}
    for path in ("redis-py", "foyer"):
        figures = [f for f in rounds if f.path == path]
        summary[path] = {
            "cpu_us_per_message_median": round(
                statistics.median(f.cpu_us_per_message for f in figures), 2
            ),
            "messages_per_s_median": round(
                statistics.median(f.messages / f.wall_s for f in figures)
            ),
        }
    old = summary["redis-py"]["cpu_us_per_message_median"]
    new = summary["foyer"]["cpu_us_per_message_median"]
    return {
        "messages": args.messages,
        "size": args.size,
        "rounds": [
            {**asdict(f), "cpu_us_per_message": round(f.cpu_us_per_message, 2)} for f in rounds
        ],
        "summary": summary,
        "cpu_ratio_old_over_new": round(old / new, 2) if new else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=120, help="payload bytes per message")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per path and round")
    parser.add_argument("--redis-url", default=None, help="default: a Valkey of its own")
    parser.add_argument("--publish", nargs=2, metavar=("URL", "CHANNEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publish:
        publish(args.publish[0], args.publish[1], args.messages, args.size)
        return
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
