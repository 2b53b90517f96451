"""Every hot-path Redis command goes through one pipeline per event-loop pass.

redis-py 8 caps a pool at 100 connections (raising, not waiting) and sets a
5 s socket timeout (DESIGN.md, Hot path). So commands are queued, and one
flusher task sends whatever accumulated while the previous batch was in
flight as one pipeline on one long-lived connection. Scripts are loaded once
and called by SHA; after a Redis restart (NOSCRIPT) they are loaded again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from server.metrics import OFF_METRICS, Metrics

log = logging.getLogger("foyer.batcher")

MAX_BATCH = 512

Batch = list[tuple[tuple[Any, ...], asyncio.Future[Any]]]


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("redis command failed: %s", type(fut.exception()).__name__)


class Batcher:
    """Queues commands; one task flushes them as pipelines, in order."""

    def __init__(
        self, redis: Redis, scripts: dict[str, str], metrics: Metrics = OFF_METRICS
    ) -> None:
        self._metrics = metrics
        self.redis = redis
        self.scripts = scripts  # name -> source
        self.shas: dict[str, str] = {}
        self._queue: deque[tuple[tuple[Any, ...], asyncio.Future[Any]]] = deque()
        self._in_flight: Batch = []  # popped from the queue, replies not all in yet
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._conn: Connection | None = None  # the batcher's own, standalone Redis only

    async def start(self) -> None:
        self._stopped = False
        await self.load_scripts()
        self._task = asyncio.create_task(self._run(), name="foyer-batcher")

    async def stop(self) -> None:
        """Cancel the flusher and fail every future still owned here, the batch
        in flight included (its replies will never be read), with a
        ``ConnectionError``: callers handle it as any Redis outage."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self.redis.connection_pool.release(conn)
        owned, self._in_flight = self._in_flight, []
        owned.extend(self._queue)
        self._queue.clear()
        for _, fut in owned:
            if not fut.done():
                fut.set_exception(RedisConnectionError("the batcher stopped"))

    async def load_scripts(self) -> None:
        for name, source in self.scripts.items():
            self.shas[name] = await self.redis.script_load(source)

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply or its exception."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._stopped:
            fut.set_exception(RedisConnectionError("the batcher stopped"))
            return fut
        self._queue.append((args, fut))
        self._wake.set()
        return fut

    def fire(self, *args: Any) -> None:
        """Queue a command whose reply nobody waits for (its error is logged)."""
        self.call(*args).add_done_callback(_log_failure)

    def script(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        return self.call("EVALSHA", self.shas[name], len(keys), *keys, *args)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                self._in_flight = batch  # ``stop`` resolves it if it cancels us here
                try:
                    await self._send(batch)
                except Exception as exc:  # the connection failed: fail this batch only
                    log.warning("redis batch failed: %s", type(exc).__name__)
                    self._metrics.redis_error("batcher")
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                self._in_flight = []

    async def _send(self, batch: Batch) -> None:
        results = await self._pipeline([args for args, _ in batch])
        if any(isinstance(r, NoScriptError) for r in results):
            await self.load_scripts()
            retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            again = await self._pipeline([batch[i][0] for i in retry])
            for i, r in zip(retry, again, strict=True):
                results[i] = r
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if isinstance(self.redis, Redis):
            results = await self._direct(commands)
        else:  # Redis Cluster: the pipeline routes each command to its slot's node
            pipe = self.redis.pipeline(transaction=False)
            for args in commands:
                pipe.execute_command(*args)
            results = await pipe.execute(raise_on_error=False)
        return [
            NoScriptError(str(r))
            if isinstance(r, ResponseError) and str(r).startswith("NOSCRIPT")
            else r
            for r in results
        ]

    async def _direct(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """What ``pipeline(transaction=False).execute(raise_on_error=False)`` does on a
        standalone Redis, on the batcher's own long-lived connection, without building a
        Pipeline per batch (redis-py 8's costs ~50 µs of CPU per batch more). Same wire
        bytes, same reply callbacks, same retry-after-disconnect on connection errors."""
        conn = self._conn
        if conn is None:
            pool = self.redis.connection_pool
            conn = self._conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        redis = self.redis

        async def execute() -> list[Any]:
            await conn.send_packed_command(conn.pack_commands(commands))
            results: list[Any] = []
            for args in commands:
                try:
                    results.append(await redis.parse_response(conn, args[0]))
                except ResponseError as exc:
                    results.append(exc)
            return results

        async def disconnect(_error: Exception) -> None:
            await conn.disconnect()

        done: list[Any] = await conn.retry.call_with_retry(execute, disconnect)
        return done
