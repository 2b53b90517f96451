"""Every hot-path Redis command goes through one queue and one long-lived connection.

redis-py 8 caps a pool at 100 connections (raising, not waiting) and sets a
5 s socket timeout (DESIGN.md, Hot path). So commands are queued, and one
flusher task writes whatever accumulated during an event-loop pass as one
pipeline. On a standalone Redis the connection is a ``RespLink``: several
batches may be in flight at once (a knock does not wait behind the round trip
of the batch before it), and replies are parsed by hiredis and matched in
order. On a Cluster, redis-py's cluster pipeline routes each command to its
slot's node, one batch at a time. Scripts are loaded once and called by SHA;
after a Redis restart (NOSCRIPT) they are loaded again and the command goes
once more.

What is retried after a connection or timeout error (with the client's
backoff and jitter, ``redis_client.retry_policy``'s budget):

- a command that never left: the connection failed to open, or was found dead
  before anything was written (Redis restarted: the idle connection read its
  EOF): it goes again;
- a command that was sent and whose reply was lost (reset mid-command, a
  timeout while Redis was paused): it may have run. Only commands whose second
  run changes nothing the first did not go again: reads, plain writes of a
  value, and the scripts in ``REPLAYABLE``, which are idempotent by
  construction (``knock.lua``: a knock whose guest already exists with the
  same resume secret answers its place again and publishes nothing;
  ``transition.lua``: a step whose operation id is already stored on the guest
  answers ``ok`` again). The others (a line said to a guest, a compare-and-set,
  ``SET NX``) fail with the error, as in any outage: never applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.metrics import OFF_METRICS, Metrics
from server.storage.command import Command
from server.storage.redis_client import BACKOFF_BASE_S, BACKOFF_CAP_S, RETRIES
from server.storage.resp_link import LinkOwner, RespLink
from server.tasks import running_loop

log = logging.getLogger("foyer.batcher")

RETRY_WINDOW_S = 5.0  # an outage is retried this long at most, then callers get the error

MAX_BATCH = 512  # commands per write
MAX_IN_FLIGHT = 4096  # commands sent and not answered yet, on a standalone link
# A command that may wait (``fire_later``) rides with the next batch, or goes
# on its own after this long: at 500 visits/s a lease drop then costs no write.
LATER_S = 0.2
LATER_MEMBERS = 512  # members merged into one variadic command (10,000 lease drops: 20)

# Scripts a second run of leaves as the first left them (see the module docstring).
REPLAYABLE = frozenset({"knock", "transition", "snapshot", "presence", "due", "done"})

LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


class _Unsent(Exception):
    """The batch's connection failed before anything was written (Cluster path)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("redis command failed: %s", type(fut.exception()).__name__)


class Batcher:
    """Queues commands; one task writes them as pipelines, in order."""

    def __init__(
        self, redis: Redis, scripts: dict[str, str], metrics: Metrics = OFF_METRICS
    ) -> None:
        self._metrics = metrics
        self.redis = redis
        self.scripts = scripts  # name -> source
        self.shas: dict[str, str] = {}
        self._standalone = isinstance(redis, Redis)
        self._queue: deque[Command] = deque()
        self._in_flight: list[Command] = []  # Cluster: popped, replies not all in yet
        self._link: RespLink | None = None  # standalone: the pipelined connection
        self._owner = LinkOwner(lost=self._lost, reload=self._reload, replied=self._replied)
        self._waiter: asyncio.Future[None] | None = None  # the flusher, idle
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        # The retry budget of the current outage (module docstring).
        self._failures = 0
        self._outage_since: float | None = None
        self._retry_at = 0.0
        self._link_down = False  # the budget ran out: each try is one, until one works
        self._backoff = ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)
        self._later: dict[tuple[str, str], list[Any]] = {}  # fire_later's, by command and key
        self._later_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._stopped = False
        await self.load_scripts()
        self._task = asyncio.create_task(self._run(), name="foyer-batcher")

    async def stop(self) -> None:
        """Cancel the flusher and fail every future still owned here, those in
        flight included (their replies will never be read), with a
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
        stopped = RedisConnectionError("the batcher stopped")
        if self._link is not None:
            link, self._link = self._link, None
            await link.aclose(stopped)  # ``_lost`` fails what it had in flight
        owned, self._in_flight = self._in_flight, []
        owned.extend(self._queue)
        self._queue.clear()
        _fail(owned, stopped)

    @property
    def in_flight(self) -> int:
        """Commands sent and not answered yet."""
        if self._link is not None:
            return self._link.in_flight
        return len(self._in_flight)

    async def load_scripts(self) -> None:
        for name, source in self.scripts.items():
            self.shas[name] = await self.redis.script_load(source)

    def call(self, *args: Any, replayable: bool = True) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply or its exception.
        ``replayable=False``: never send it again once it may have run."""
        fut: asyncio.Future[Any] = running_loop().create_future()
        if self._stopped:
            fut.set_exception(RedisConnectionError("the batcher stopped"))
            return fut
        if self._later:
            self._queue_later()  # ahead of this one: they were asked for first
        self._queue.append(Command(args, fut, replayable))
        self._wake()
        return fut

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fire(self, *args: Any) -> None:
        """Queue a command whose reply nobody waits for (its error is logged)."""
        self.call(*args).add_done_callback(_log_failure)

    def fire_later(self, command: str, key: str, *members: Any) -> None:
        """``fire`` a variadic command (``ZREM``, ``SREM``, ``HDEL``) that may
        wait up to ``LATER_S`` for the next batch to ride with; the members of
        every such call on one key go as one command (an ``admit_all`` of
        10,000 drops 10,000 leases in 20 commands, not 10,000). Only for a
        command whose effect does not depend on what is sent meanwhile (a lease
        drop: its member is unique to one socket); one still waiting when the
        batcher stops is not sent."""
        if self._stopped:
            return
        self._later.setdefault((command, key), []).extend(members)
        if self._later_timer is None:
            self._later_timer = running_loop().call_later(LATER_S, self._queue_later)

    def _queue_later(self) -> None:
        later, self._later = self._later, {}
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None
        loop = running_loop()
        for (command, key), members in later.items():
            for at in range(0, len(members), LATER_MEMBERS):
                fut: asyncio.Future[Any] = loop.create_future()
                fut.add_done_callback(_log_failure)
                args = (command, key, *members[at : at + LATER_MEMBERS])
                self._queue.append(Command(args, fut, True))
        self._wake()

    def _drop_later(self) -> None:
        self._later = {}
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None

    def script(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        return self.call(
            "EVALSHA", self.shas[name], len(keys), *keys, *args, replayable=name in REPLAYABLE
        )

    def _take(self) -> list[Command]:
        queue = self._queue
        return [queue.popleft() for _ in range(min(len(queue), MAX_BATCH))]

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._waiter = running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            while self._queue:
                if not self._standalone:
                    batch = self._in_flight = self._take()  # ``stop`` resolves it if cancelled
                    await self._deliver(batch)
                    self._in_flight = []
                    continue
                link = await self._ready_link()
                if link is None:
                    continue  # the outage's budget ran out: what was queued failed
                batch = self._take()
                try:
                    link.send(batch)
                except Exception as exc:  # not the link: an argument Redis cannot take
                    log.warning("redis batch refused: %s", type(exc).__name__)
                    self._metrics.redis_error("batcher")
                    _fail(batch, exc)
                    continue
                if link.in_flight >= MAX_IN_FLIGHT:
                    await link.room(MAX_IN_FLIGHT)
                elif self._queue:
                    await asyncio.sleep(0)  # a backlog goes out between other work, not in one go

    # -- standalone: one pipelined link ----------------------------------------------

    async def _ready_link(self) -> RespLink | None:
        """The link, opened if need be (after the outage's backoff); ``None``
        when opening failed past the retry budget (the queue then failed)."""
        loop = running_loop()
        while True:
            link = self._link
            if link is not None:
                if link.usable:
                    return link
                self._link = None  # Redis closed it (a restart): what it had in flight replays
                await link.aclose(RedisConnectionError("Redis closed the connection"))
                if not self._queue:
                    return None
                continue
            delay = self._retry_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            conn = self.redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            conn.retry = Retry(NoBackoff(), 0)  # its own, not the pool's: the budget is ours
            try:
                self._link = await RespLink.open(conn, self.redis.response_callbacks, self._owner)
                return self._link
            except LINK_ERRORS as exc:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                if not self._failed(exc):
                    return None

    def _lost(self, link: RespLink, commands: list[Command], error: Exception) -> None:
        """``link`` failed with ``commands`` sent and not answered: they may
        have run. The replayable ones go again first; the others fail."""
        if self._stopped:
            _fail(commands, error)
            return
        _fail([c for c in commands if not c.replayable], error)
        self._queue.extendleft(reversed([c for c in commands if c.replayable]))
        self._failed(error)
        self._wake()

    def _reload(self, commands: list[Command]) -> None:
        """Redis lost the scripts (a restart, ``SCRIPT FLUSH``): load them
        again ahead of ``commands``, which then go once more."""
        loop = running_loop()
        loads = []
        for source in self.scripts.values():
            fut: asyncio.Future[Any] = loop.create_future()
            fut.add_done_callback(_log_failure)
            loads.append(Command(("SCRIPT LOAD", source), fut, True))
        self._queue.extendleft(reversed(loads + commands))
        self._wake()

    def _replied(self) -> None:
        """A reply arrived: the link works, whatever failed before."""
        self._failures = 0
        self._outage_since = None
        self._link_down = False

    def _failed(self, error: Exception) -> bool:
        """Count one failure of the link; ``False`` when the outage used up its
        budget, in which case everything queued fails with ``error``."""
        self._metrics.redis_error("batcher")
        now = running_loop().time()
        self._failures += 1
        if self._outage_since is None:
            self._outage_since = now
        if self._link_down or self._failures > RETRIES or now - self._outage_since > RETRY_WINDOW_S:
            # During a long outage each command tries once: callers hear of it at once.
            self._link_down = True
            self._retry_at = 0.0
            log.warning("redis link failed after %d tries: %s", self._failures, error)
            queued = list(self._queue)
            self._queue.clear()
            _fail(queued, error)
            return False
        log.info("redis link failed (%s); retry %d", type(error).__name__, self._failures)
        self._retry_at = now + self._backoff.compute(self._failures)
        return True

    # -- Redis Cluster: redis-py's cluster pipeline, one batch at a time ----------------

    async def _deliver(self, batch: list[Command]) -> None:
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
                _fail([c for c in batch if not c.replayable], exc)
                batch = [c for c in batch if c.replayable]
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

    async def _send(self, batch: list[Command]) -> None:
        results = await self._pipeline([c.args for c in batch])
        if any(isinstance(r, NoScriptError) for r in results):
            await self.load_scripts()
            retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            again = await self._pipeline([batch[i].args for i in retry])
            for i, r in zip(retry, again, strict=True):
                results[i] = r
        for command, result in zip(batch, results, strict=True):
            fut = command.fut
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
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


def _fail(commands: list[Command], error: Exception) -> None:
    for command in commands:
        if not command.fut.done():
            command.fut.set_exception(error)
