"""One pipelined connection to a standalone Redis: batches go out as soon as
they are ready, replies are matched to commands in order.

The Batcher used to send a batch and wait for all its replies before sending
the next (stop and wait), and read each reply through redis-py's
``read_response``: an ``asyncio.timeout`` and a coroutine per command. Here the
link takes the socket over as its protocol: whatever arrives is fed to one
``hiredis.Reader`` in ``data_received`` and the oldest commands are resolved in
a plain loop, while the writer may have several batches in flight (Redis
answers a connection's commands in order; that is what makes this safe). No
reader task: a reply resolves its future in the loop pass that read it, not
one pass later after a task wakes (issue 11: a task step and a stream buffer
per read). Liveness is a watchdog, not a timeout per read: commands waiting
longer than the connection's ``socket_timeout`` for any reply end the link
with a ``TimeoutError``.

redis-py opens the connection (TLS, AUTH, HELLO, SELECT, the client's
settings) and decodes replies the way ``parse_response`` does: the same
``hiredis.Reader`` arguments, the same response callbacks. Everything else
(what to replay after a loss, backoff) is the Batcher's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.storage.command import Command, pack_commands
from server.tasks import cancel_and_wait

NOT_ENOUGH = object()  # hiredis's "no complete reply yet" (False is a RESP3 value)
PUSH: type | tuple[()] = getattr(hiredis, "PushNotification", ())  # hiredis 3.2+; never here


@dataclass(frozen=True, slots=True)
class LinkOwner:
    """What the link tells its owner (the Batcher)."""

    lost: Callable[[RespLink, list[Command], Exception], None]
    """The link failed: every command sent and not answered, in order, once."""
    reload: Callable[[list[Command]], None]
    """Commands answered ``NOSCRIPT``, in order: to send again behind a ``SCRIPT LOAD``."""
    replied: Callable[[], None]
    """Replies arrived: the link works."""


class RespLink(asyncio.Protocol):
    """``send`` writes a batch now; replies resolve each command's future as
    they are read (``callbacks``: redis-py's reply callbacks by command); the
    rest goes to the ``owner``."""

    def __init__(
        self, conn: Connection, callbacks: Mapping[str | bytes, Any], owner: LinkOwner
    ) -> None:
        self._conn = conn
        writer = conn._writer
        assert writer is not None
        self._transport = cast(asyncio.Transport, writer.transport)
        self._callbacks = callbacks
        self._owner = owner
        self._timeout = conn.socket_timeout
        self._sent: deque[Command] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self._last_read = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._loop = asyncio.get_running_loop()
        self._parser = self._new_parser()
        self._streams: asyncio.BaseProtocol | None = None  # redis-py's, told of the close

    @classmethod
    async def open(
        cls, conn: Connection, callbacks: Mapping[str | bytes, Any], owner: LinkOwner
    ) -> RespLink:
        """Connect ``conn`` (a fresh connection of the client's pool) and start
        reading. Errors are the connection's own (``ConnectionError``, ...)."""
        await conn.connect()  # type: ignore[no-untyped-call]
        link = cls(conn, callbacks, owner)
        link._start()
        return link

    def _new_parser(self) -> hiredis.Reader:
        parser = self._conn._parser
        kwargs: dict[str, Any] = {
            "protocolError": InvalidResponse,
            "replyError": parser.parse_error,
            "notEnoughData": NOT_ENOUGH,
        }
        encoder = self._conn.encoder
        if encoder.decode_responses:
            kwargs["encoding"] = encoder.encoding
            kwargs["errors"] = encoder.encoding_errors
        return hiredis.Reader(**kwargs)

    def _start(self) -> None:
        """Take the socket over from redis-py's stream reader; what that
        buffered past the handshake (nothing, unless Redis said more) is read
        first."""
        reader = self._conn._reader
        self._last_read = self._loop.time()
        if reader is not None and (reader.at_eof() or reader.exception() is not None):
            raise RedisConnectionError("Redis closed the connection during its handshake")
        self._streams = self._transport.get_protocol()
        self._transport.set_protocol(self)
        leftover = bytes(getattr(reader, "_buffer", b""))
        if leftover:
            self.data_received(leftover)
        if self._timeout:
            self._tasks = [asyncio.create_task(self._watch(), name="foyer-redis-watchdog")]

    @property
    def usable(self) -> bool:
        """Open, and Redis has not closed its side (after a restart the EOF of
        an idle connection is already read: nothing is sent into it; a reset
        read in this loop pass closes the transport before ``connection_lost``
        is called)."""
        return not (self._closed or self._transport.is_closing())

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    def send(self, batch: list[Command]) -> None:
        """Write ``batch`` now (the caller checked ``usable``). An argument
        that cannot be sent raises here, before anything was written."""
        data = pack_commands(self._conn, [c.args for c in batch])
        if not self._sent:
            self._last_read = self._loop.time()  # the watchdog counts from here
        self._sent.extend(batch)
        if isinstance(data, bytes):
            self._transport.write(data)
        else:
            self._transport.writelines(data)

    async def room(self, limit: int) -> None:
        """Until fewer than ``limit`` commands await replies (or the link ended)."""
        while len(self._sent) >= limit and not self._closed:
            self._room.clear()
            await self._room.wait()

    def close(self, error: Exception) -> None:
        """End the link now: what was sent and not answered goes to ``on_lost``
        (before this returns), the socket is aborted, the watchdog cancelled."""
        if self._closed:
            return
        self._closed = True
        self._room.set()
        lost, self._sent = list(self._sent), deque()
        with contextlib.suppress(Exception):
            self._transport.abort()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._owner.lost(self, lost, error)

    async def aclose(self, error: Exception) -> None:
        """``close``, then wait for the watchdog and let redis-py tidy the connection."""
        self.close(error)
        await cancel_and_wait([t for t in self._tasks if t is not asyncio.current_task()])
        with contextlib.suppress(Exception):
            await self._conn.disconnect(nowait=True)

    # -- the socket's side (asyncio.Protocol) ---------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._last_read = self._loop.time()
        try:
            self._resolve(data)
        except Exception as exc:
            self.close(exc)

    def eof_received(self) -> bool | None:
        self.close(RedisConnectionError("Redis closed the connection"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RedisConnectionError(f"the Redis connection was lost ({exc!r})"))
        if self._streams is not None:
            with contextlib.suppress(Exception):
                self._streams.connection_lost(exc)  # redis-py's writer sees it closed

    def _resolve(self, data: bytes) -> None:
        parser = self._parser
        sent = self._sent
        callbacks = self._callbacks
        parser.feed(data)
        reload: list[Command] = []
        while (reply := parser.gets()) is not NOT_ENOUGH:
            if isinstance(reply, PUSH):
                continue  # not asked for on this connection: not a reply
            if isinstance(reply, RedisConnectionError):
                raise reply  # LOADING and the like: the link is not usable yet
            command = sent.popleft()
            fut = command.fut
            if fut.done():
                continue  # its caller gave up
            if isinstance(reply, Exception):
                if isinstance(reply, NoScriptError) and not command.reloaded:
                    command.reloaded = True
                    reload.append(command)
                else:
                    fut.set_exception(reply)
                continue
            callback = callbacks.get(command.args[0])
            fut.set_result(reply if callback is None else callback(reply))
        self._owner.replied()
        if reload:
            self._owner.reload(reload)
        self._room.set()

    async def _watch(self) -> None:
        """Commands waiting ``socket_timeout`` for any reply: Redis is paused or
        the link is dead without a reset; end it (what may replay, replays)."""
        timeout = self._timeout
        assert timeout
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(min(timeout / 4, 1.0))
            if self._sent and loop.time() - self._last_read > timeout:
                self.close(RedisTimeoutError("Timeout reading from Redis"))
