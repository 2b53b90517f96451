"""Every hot-path Redis command goes through one pipeline per event-loop pass.

redis-py 8 caps a pool at 100 connections (raising, not waiting) and sets a
5 s socket timeout (DESIGN.md, Hot path). So commands are queued, and one
flusher task sends whatever accumulated while the previous batch was in
flight as one pipeline on one long-lived connection. Scripts are loaded once
and called by SHA; after a Redis restart (NOSCRIPT) they are loaded again.

What is retried after a connection or timeout error (with the client's
backoff and jitter, ``redis_client.retry_policy``'s budget):

- a batch that never left: the connection failed to open, or was found dead
  before anything was written (Redis restarted: the idle connection read its
  EOF): every command goes again;
- a batch that was sent and whose replies were lost (reset mid-command, a
  timeout while Redis was paused): the command may have run. Only commands
  whose second run changes nothing the first did not go again: reads, plain
  writes of a value, and the scripts in ``REPLAYABLE``, which are idempotent
  by construction (``knock.lua``: a knock whose guest already exists with the
  same resume secret answers its place again and publishes nothing;
  ``transition.lua``: a step whose operation id is already stored on the guest
  answers ``ok`` again). The others (a line said to a guest, a compare-and-set,
  ``SET NX``) fail with the error, as in any outage: never applied twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.metrics import OFF_METRICS, Metrics
from server.storage.redis_client import BACKOFF_BASE_S, BACKOFF_CAP_S, RETRIES

log = logging.getLogger("foyer.batcher")

RETRY_WINDOW_S = 5.0  # a batch is retried this long at most, then its callers get the error

MAX_BATCH = 512
# A command that may wait (``fire_later``) rides with the next batch, or goes
# on its own after this long: at 500 visits/s a lease drop then costs no write.
LATER_S = 0.2

# Scripts a second run of leaves as the first left them (see the module docstring).
REPLAYABLE = frozenset({"knock", "transition", "snapshot", "presence", "due", "done"})

LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)

Item = tuple[tuple[Any, ...], asyncio.Future[Any], bool]  # command, its future, replayable
Batch = list[Item]


class _Unsent(Exception):
    """The batch's connection failed before anything was written."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


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
        self._queue: deque[Item] = deque()
        self._in_flight: Batch = []  # popped from the queue, replies not all in yet
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._conn: Connection | None = None  # the batcher's own, standalone Redis only
        self._link_down = False  # the last batch used up its retries: try once until one works
        self._later: list[tuple[Any, ...]] = []  # fire_later's, not queued yet
        self._later_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._stopped = False
        await self.load_scripts()
        self._task = asyncio.create_task(self._run(), name="foyer-batcher")

    async def stop(self) -> None:
        """Cancel the flusher and fail every future still owned here, the batch
        in flight included (its replies will never be read), with a
        ``ConnectionError``: callers handle it as any Redis outage."""
        self._stopped = True
        self._drop_later()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect()
        owned, self._in_flight = self._in_flight, []
        owned.extend(self._queue)
        self._queue.clear()
        for _, fut, _ in owned:
            if not fut.done():
                fut.set_exception(RedisConnectionError("the batcher stopped"))

    async def load_scripts(self) -> None:
        for name, source in self.scripts.items():
            self.shas[name] = await self.redis.script_load(source)

    def call(self, *args: Any, replayable: bool = True) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply or its exception.
        ``replayable=False``: never send it again once it may have run."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._stopped:
            fut.set_exception(RedisConnectionError("the batcher stopped"))
            return fut
        if self._later:
            self._queue_later()  # ahead of this one: they were asked for first
        self._queue.append((args, fut, replayable))
        self._wake.set()
        return fut

    def fire(self, *args: Any) -> None:
        """Queue a command whose reply nobody waits for (its error is logged)."""
        self.call(*args).add_done_callback(_log_failure)

    def fire_later(self, *args: Any) -> None:
        """``fire`` a command that may wait up to ``LATER_S`` for the next batch
        to ride with. Only for a command whose effect does not depend on what
        is sent meanwhile (a lease drop: its member is unique to one socket);
        one still waiting when the batcher stops is not sent."""
        if self._stopped:
            return
        self._later.append(args)
        if self._later_timer is None:
            self._later_timer = asyncio.get_running_loop().call_later(LATER_S, self._queue_later)

    def _queue_later(self) -> None:
        later, self._later = self._later, []
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None
        loop = asyncio.get_running_loop()
        for args in later:
            fut: asyncio.Future[Any] = loop.create_future()
            fut.add_done_callback(_log_failure)
            self._queue.append((args, fut, True))
        self._wake.set()

    def _drop_later(self) -> None:
        self._later = []
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None

    def script(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        return self.call(
            "EVALSHA", self.shas[name], len(keys), *keys, *args, replayable=name in REPLAYABLE
        )

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                self._in_flight = batch  # ``stop`` resolves it if it cancels us here
                await self._deliver(batch)
                self._in_flight = []

    async def _deliver(self, batch: Batch) -> None:
        """Send ``batch``, retrying what may be retried (module docstring) with
        backoff and jitter; every future ends with a reply or an error."""
        backoff = ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)
        deadline = time.monotonic() + RETRY_WINDOW_S
        failures = 0
        while batch:
            try:
                await self._send(batch)
                self._link_down = False
                return
            except _Unsent as unsent:  # nothing went out: all of it may go again
                error: Exception = unsent.error
            except LINK_ERRORS as exc:  # sent, replies lost: some of it may have run
                error = exc
                _fail([item for item in batch if not item[2]], exc)
                batch = [item for item in batch if item[2]]
            except Exception as exc:  # not the link: fail this batch only
                log.warning("redis batch failed: %s", type(exc).__name__)
                self._metrics.redis_error("batcher")
                _fail(batch, exc)
                return
            failures += 1
            self._metrics.redis_error("batcher")
            if self._link_down or failures > RETRIES or time.monotonic() > deadline:
                # During a long outage each batch tries once: callers hear of it at once.
                self._link_down = True
                log.warning("redis batch failed after %d tries: %s", failures, error)
                _fail(batch, error)
                return
            log.info("redis link failed (%s); retry %d", type(error).__name__, failures)
            await asyncio.sleep(backoff.compute(failures))

    async def _send(self, batch: Batch) -> None:
        results = await self._pipeline([args for args, _, _ in batch])
        if any(isinstance(r, NoScriptError) for r in results):
            await self.load_scripts()
            retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            again = await self._pipeline([batch[i][0] for i in retry])
            for i, r in zip(retry, again, strict=True):
                results[i] = r
        for (_, fut, _), result in zip(batch, results, strict=True):
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
        bytes, same reply callbacks. No retry here: ``_deliver`` decides."""
        conn = await self._connection()
        try:
            await conn.send_packed_command(_packed(conn, commands), check_health=False)
            results: list[Any] = []
            for args in commands:
                try:
                    results.append(await self.redis.parse_response(conn, args[0]))
                except ResponseError as exc:
                    results.append(exc)
            return results
        except BaseException:
            await conn.disconnect(nowait=True)  # its replies are out of step now
            raise

    async def _connection(self) -> Connection:
        """The batcher's connection, open and not known dead, or ``_Unsent``."""
        conn = self._conn
        try:
            if conn is None:  # its own, not the pool's: the retries are ``_deliver``'s
                pool = self.redis.connection_pool
                conn = self._conn = pool.make_connection()  # type: ignore[no-untyped-call]
                conn.retry = Retry(NoBackoff(), 0)
            elif _closed_by_peer(conn):  # Redis went away since: find out before sending
                await conn.disconnect(nowait=True)
            await conn.connect()  # a no-op when connected; else the pool's retry policy
        except LINK_ERRORS as exc:
            if conn is not None:
                await conn.disconnect(nowait=True)
            raise _Unsent(exc) from exc
        return conn


def _packed(conn: Connection, commands: list[tuple[Any, ...]]) -> bytes | list[bytes]:
    """The batch in RESP, packed by hiredis in C (redis-py's asyncio connection
    packs in Python: ~4% of a guest process's CPU at 500 visits/s). A command
    that names two words in one (``"SCRIPT LOAD"``) is split as redis-py does;
    an argument hiredis cannot pack goes through redis-py, which says why."""
    try:
        return b"".join(
            pack_command((*args[0].split(), *args[1:]) if " " in args[0] else args)
            for args in commands
        )
    except TypeError:
        return conn.pack_commands(commands)


def _closed_by_peer(conn: Connection) -> bool:
    """An idle connection whose peer closed or reset it has its EOF or its error
    read already (the event loop feeds them to the stream): free to check, and
    it catches every stale connection after a Redis restart before a byte goes."""
    reader = getattr(conn, "_reader", None)
    if not isinstance(reader, asyncio.StreamReader):
        return reader is None
    return reader.at_eof() or reader.exception() is not None


def _fail(items: Batch, error: Exception) -> None:
    for _, fut, _ in items:
        if not fut.done():
            fut.set_exception(error)
