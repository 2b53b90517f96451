"""One dedicated pub/sub connection: raw RESP out, hiredis in, no per-message toll.

redis-py's ``PubSub.get_message`` enters an ``asyncio.timeout``, runs
``check_health`` and builds a dict for every message; on the knock path that was
a large share of the process CPU (issue 11). Here the connection's socket is
taken over by a protocol of ours: whatever arrives is fed to one
``hiredis.Reader`` in ``data_received`` and every complete reply dispatched in
one loop, in the pass that read it (no reader task to wake, no stream buffer).
A burst (an ``admit_all`` of a big lobby) is dispatched ``YIELD_EVERY`` replies
per pass with reading paused meanwhile, so the frames it queued go out between
its slices. Liveness is not a timeout per read either: when
nothing came for ``ping_after`` seconds a PING goes out, and a link silent for
``dead_after`` seconds is aborted and reconnected.

(S)SUBSCRIBE and (S)UNSUBSCRIBE go out as raw commands on the same connection
(write only): their confirmations come back on the read side, in order. The
connection remembers the channels it should hold; after a drop it reconnects,
subscribes them all again in one write, and the confirmations tell the owner
(the Broker) that those channels may have missed messages meanwhile.

redis-py is used only to open a connection (host, port, TLS, AUTH, SELECT: the
client's own settings), then its transport is taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Set
from typing import Any, cast

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from server.metrics import OFF_METRICS, Metrics
from server.tasks import cancel_and_wait, running_loop

log = logging.getLogger("foyer.pubsub")

YIELD_EVERY = 32  # replies dispatched in one loop pass
CONNECT_TIMEOUT_S = 5.0
RECONNECT_PAUSE_S = 0.2
PING_AFTER_S = 5.0  # idle this long: send a PING (its answer is traffic)
DEAD_AFTER_S = 15.0  # nothing read this long, PINGs included: the link is dead
WRITE_BUFFER_LIMIT = 1 << 20  # Redis not reading our commands: reconnect, not buffer
RESUBSCRIBE_BATCH = 512  # channels per SUBSCRIBE when a standalone link comes back
PING = b"*1\r\n$4\r\nPING\r\n"

Connector = Callable[[], AbstractConnection]
MessageCallback = Callable[[bytes, bytes], None]
ChannelCallback = Callable[[bytes], None]


def _ignore(_: object = None) -> None:
    return None


def command(*parts: bytes) -> bytes:
    """One command in RESP (what ``redis-cli`` would send)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def connector(connection_class: type[AbstractConnection], kwargs: Mapping[str, Any]) -> Connector:
    """Fresh connections with a client's settings, RESP2 (pub/sub replies are
    plain arrays) and no retries or health checks of their own: the reader
    decides when to reconnect."""
    settings = {**kwargs, "protocol": 2, "health_check_interval": 0}
    settings.pop("retry", None)

    def connect() -> AbstractConnection:
        return connection_class(**settings, retry=Retry(NoBackoff(), 0))

    return connect


class _Link(asyncio.Protocol):
    """One connection's read side, as the transport's protocol: parses in
    ``data_received`` and hands each reply to the owner in the same pass."""

    def __init__(
        self,
        transport: asyncio.Transport,
        streams: asyncio.BaseProtocol,
        handle: Callable[[Any], None],
        seen: Callable[[], None],
    ) -> None:
        self.transport = transport
        self._streams = streams  # redis-py's, told of the close
        self._handle = handle
        self._seen = seen
        self._parser = hiredis.Reader()
        self._paused = False
        self._loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[Exception] = self._loop.create_future()

    def data_received(self, data: bytes) -> None:
        self._seen()
        try:
            self._parser.feed(data)
        except Exception as exc:
            self._end(exc)
            return
        if not self._paused:
            self._dispatch()

    def eof_received(self) -> bool | None:
        self._end(ConnectionError("Redis closed the pub/sub connection"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(ConnectionError(f"the pub/sub connection was lost ({exc!r})"))
        with contextlib.suppress(Exception):
            self._streams.connection_lost(exc)

    def _end(self, error: Exception) -> None:
        if not self.ended.done():
            self.ended.set_result(error)

    def _dispatch(self) -> None:
        """Up to ``YIELD_EVERY`` replies; more buffered go in the next pass,
        with reading paused until they are all out."""
        if self.ended.done():
            return
        parser, handle = self._parser, self._handle
        try:
            for _ in range(YIELD_EVERY):
                reply = parser.gets()
                if reply is False:
                    if self._paused:
                        self._paused = False
                        self.transport.resume_reading()
                    return
                try:
                    handle(reply)
                except Exception:
                    log.exception("bad event on pub/sub")
        except Exception as exc:  # hiredis.ProtocolError: the stream is not RESP
            self._end(exc)
            self.transport.abort()
            return
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._loop.call_soon(self._dispatch)


class SubscriberConnection:
    """Channels held on one Redis node through one connection, read by its protocol.

    ``on_message(channel, data)`` runs for every message, in order;
    ``on_subscribed(channel)`` for every confirmation, the ones after a
    reconnect included; ``on_dropped(channel)`` when the server ended a
    subscription nobody asked to end (a Cluster slot moved); ``on_lost()``
    when the link failed or Redis answered an error (on a Cluster the slot may
    live elsewhere now). Callbacks must not block; an exception in one is
    logged and the reader goes on."""

    def __init__(
        self,
        connect: Connector,
        *,
        on_message: MessageCallback,
        on_subscribed: ChannelCallback = _ignore,
        on_dropped: ChannelCallback = _ignore,
        on_lost: Callable[[], None] = _ignore,
        sharded: bool = False,
        name: str = "",
        metrics: Metrics = OFF_METRICS,
        ping_after: float = PING_AFTER_S,
        dead_after: float = DEAD_AFTER_S,
    ) -> None:
        self.name = name
        self._connect = connect
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._on_dropped = on_dropped
        self._on_lost = on_lost
        self._sharded = sharded
        prefix = b"s" if sharded else b""
        self._subscribe_cmd = prefix.upper() + b"SUBSCRIBE"
        self._unsubscribe_cmd = prefix.upper() + b"UNSUBSCRIBE"
        self._message_kind = prefix + b"message"
        self._subscribe_kind = prefix + b"subscribe"
        self._unsubscribe_kind = prefix + b"unsubscribe"
        self._metrics = metrics
        self._ping_after = ping_after
        self._dead_after = dead_after
        self._channels: set[str] = set()
        self._leaving: dict[bytes, int] = {}  # UNSUBSCRIBEs sent, reply not read yet
        self._conn: AbstractConnection | None = None
        self._link: _Link | None = None
        self._last_read = 0.0
        self._failing = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Connect now, so that the first subscribe does not wait for a connect;
        raises if Redis cannot be reached (the reader would keep trying)."""
        if self._link is None:
            await self._open()

    def start(self) -> None:
        """Start the link's keeper and its keepalive (``stop`` cancels both)."""
        suffix = f"-{self.name}" if self.name else ""
        self._tasks = [
            asyncio.create_task(self._run(), name=f"foyer-pubsub{suffix}"),
            asyncio.create_task(self._keepalive(), name=f"foyer-pubsub-ping{suffix}"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self._close()

    @property
    def healthy(self) -> bool:
        """False from a failed read or connect until the next connect works."""
        return not self._failing

    @property
    def channels(self) -> Set[str]:
        """The channels this connection holds or is subscribing (read only)."""
        return self._channels

    # -- subscriptions -----------------------------------------------------------------

    def subscribe(self, channel: str) -> None:
        """Ask for ``channel``; ``on_subscribed`` says when Redis confirmed it.
        Sent again even if already held (a lost confirmation costs nothing
        then). Without a link the reconnect subscribes it."""
        self._channels.add(channel)
        if self._link is not None:
            self._write(command(self._subscribe_cmd, channel.encode()))

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._link is not None:
            raw = channel.encode()
            self._leaving[raw] = self._leaving.get(raw, 0) + 1
            self._write(command(self._unsubscribe_cmd, raw))

    # -- the connection ------------------------------------------------------------------

    async def _open(self) -> None:
        conn = self._connect()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        reader, writer = conn._reader, conn._writer
        if reader is None or writer is None or reader.at_eof() or reader.exception() is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise ConnectionError("the pub/sub connection closed during its handshake")
        transport = cast(asyncio.Transport, writer.transport)
        link = _Link(transport, transport.get_protocol(), self._handle, self._saw_traffic)
        transport.set_protocol(link)  # taken over from here on
        self._conn, self._link = conn, link
        leftover = bytes(getattr(reader, "_buffer", b""))
        if leftover:
            link.data_received(leftover)
        self._leaving.clear()
        self._last_read = asyncio.get_running_loop().time()
        if self._failing:
            log.info("pub/sub connection %s is back", self.name or "")
        self._failing = False
        if self._channels:
            self._write(b"".join(self._subscribe_commands(sorted(self._channels))))

    def _subscribe_commands(self, channels: list[str]) -> Iterable[bytes]:
        if self._sharded:  # SSUBSCRIBE takes channels of one slot only
            for channel in channels:
                yield command(self._subscribe_cmd, channel.encode())
            return
        for i in range(0, len(channels), RESUBSCRIBE_BATCH):
            batch = channels[i : i + RESUBSCRIBE_BATCH]
            yield command(self._subscribe_cmd, *(c.encode() for c in batch))

    def _write(self, data: bytes) -> None:
        link = self._link
        assert link is not None
        link.transport.write(data)
        if link.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            log.warning("Redis does not read the pub/sub commands; reconnecting")
            link.transport.abort()

    def _saw_traffic(self) -> None:
        self._last_read = running_loop().time()

    async def _close(self) -> None:
        conn, link, self._conn, self._link = self._conn, self._link, None, None
        if link is not None:
            link.transport.abort()  # at once: a TLS goodbye would outlive a stopping loop
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _run(self) -> None:
        while True:
            try:
                if self._link is None:
                    await self._open()
                assert self._link is not None
                raise await self._link.ended  # the protocol reads; this waits for its end
            except Exception as exc:
                if not self._failing:
                    log.warning(
                        "pub/sub connection %s failed (%s); reconnecting",
                        self.name,
                        type(exc).__name__,
                    )
                self._metrics.redis_error("pubsub")
                self._failing = True
                await self._close()
                try:
                    self._on_lost()
                except Exception:
                    log.exception("pub/sub on_lost failed")
                await asyncio.sleep(RECONNECT_PAUSE_S)

    def _handle(self, reply: Any) -> None:
        """The hot path: no timeout, no health check, no dict per message."""
        if type(reply) is list and reply[0] == self._message_kind:
            self._on_message(reply[1], reply[2])
        else:
            self._on_reply(reply)

    def _on_reply(self, reply: Any) -> None:
        """Everything but a message: confirmations, drops, PONGs, errors."""
        if isinstance(reply, hiredis.ReplyError):
            log.warning("Redis refused a pub/sub command: %s", reply)
            self._metrics.redis_error("pubsub")
            self._on_lost()  # MOVED on a Cluster: the slot lives elsewhere now
            return
        if type(reply) is not list or len(reply) < 2:
            return  # PONG outside of subscribed mode
        kind, channel = reply[0], reply[1]
        if kind == self._subscribe_kind:
            self._on_subscribed(channel)
        elif kind == self._unsubscribe_kind and isinstance(channel, bytes):
            left = self._leaving.get(channel, 0)
            if left > 1:
                self._leaving[channel] = left - 1
            elif left == 1:
                del self._leaving[channel]
            elif channel.decode() in self._channels:  # nobody asked: the slot moved
                self._channels.discard(channel.decode())
                self._on_dropped(channel)

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._ping_after / 2)
            link = self._link
            if link is None:
                continue
            idle = loop.time() - self._last_read
            if idle >= self._dead_after:
                log.warning(
                    "pub/sub connection %s silent for %.1f s; reconnecting", self.name, idle
                )
                link.transport.abort()  # the link ends, and ``_run`` reconnects
            elif idle >= self._ping_after:
                self._write(PING)
