"""One WebSocket, served straight on its transport.

``ws_frames.FrameReader`` parses what comes in; this class runs the control
frames (pongs, the closing handshake, pings) and frames what goes out (a
server frame is a two-to-ten-byte header and the payload).
There is no writer task and no send queue of ours: what is sent in one loop
pass goes to the transport in one write at the end of the pass, so a guest
waiting in a lobby costs a transport, a protocol object and the one task that
reads its frames (the endpoint), and nothing else (issue 11: 25 KiB per
waiting guest on uvicorn's ASGI stack, whose queues, events and scope lived
as long as the socket; a burst of 10,000 frames was 10,000 syscalls).

The transport's buffer is the send queue, bounded like centrifuge's
``ClientQueueMaxSize``: a peer whose unsent bytes pass ``limits.queue_bytes``,
or that is sent more than ``limits.queue_frames`` frames while the transport
is paused (over its high-water mark), is closed with 4013. A peer that stops
reading altogether leaves the transport paused; after ``limits.write_timeout``
the transport is aborted (a plain close would wait for the buffer to drain),
so the endpoint's clean-up runs and a host device counts as offline at once.

Incoming messages wait in a small inbox for the endpoint's ``receive``; when
the endpoint falls behind, reading from the socket pauses (TCP pushes back).
A keep-alive timer pings a quiet peer and aborts one that stays silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import MutableSet
from dataclasses import dataclass
from typing import Any, cast

from protocol.codec import Codec, Frame
from protocol.errors import CloseCode
from protocol.messages import Message
from server.lobby.ws_frames import (
    BINARY,
    CLOSE,
    INVALID_DATA,
    PING,
    PONG,
    TEXT,
    Event,
    FrameError,
    FrameReader,
    close_frame,
    control,
    header,
)
from server.metrics import OFF_METRICS, Metrics, SlowReason
from server.tasks import running_loop

log = logging.getLogger("foyer.connection")

INBOX_HIGH = 64  # messages waiting for the endpoint before reading pauses
INBOX_LOW = 16  # ... and resumes
_FIN_BINARY = 0x82  # RFC 6455 5.2: FIN + opcode of an unfragmented message
_FIN_TEXT = 0x81
_END = b""  # in the outgoing list: the closing handshake is done, close TCP after this


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """Every bound of one socket (``FOYER_*`` settings, see the README)."""

    queue_frames: int = 4096  # frames sent while the transport is paused
    queue_bytes: int = 1 << 20  # unsent bytes in the transport's buffer
    close_timeout: float = 2.0  # a close waits this long for the peer's close
    write_timeout: float = 10.0  # the transport may stay paused this long
    ping_interval: float = 20.0  # a peer quiet this long is pinged
    ping_timeout: float = 20.0  # ... and aborted if still quiet this much later
    max_size: int = 1 << 20  # the largest incoming message (1009 beyond)


class Connection(asyncio.Protocol):
    """An open WebSocket (the handshake is done): ``send`` writes at once,
    ``receive`` waits for the next message, ``close`` starts the closing
    handshake. The endpoint owns it; the hub only sends and closes."""

    __slots__ = (
        "_close_sent",
        "_close_timer",
        "_events",
        "_flush_soon",
        "_inbox",
        "_input_done",
        "_keepalive",
        "_last_seen",
        "_loop",
        "_lost",
        "_metrics",
        "_out",
        "_paused_frames",
        "_pending",
        "_reader",
        "_reading_paused",
        "_registry",
        "_stuck_timer",
        "_waiter",
        "closing",
        "codec",
        "limits",
        "transport",
    )

    def __init__(
        self,
        codec: Codec,
        limits: SocketLimits = SocketLimits(),
        metrics: Metrics = OFF_METRICS,
    ) -> None:
        self.codec = codec
        self.limits = limits
        self.closing = False
        self.transport: asyncio.Transport | None = None
        self._metrics = metrics
        self._reader = FrameReader(limits.max_size)
        self._events: list[Event] = []  # what one read parsed (reused: one list per socket)
        self._close_sent = False
        self._input_done = False  # the peer's close came, or its frames broke the protocol
        self._loop = running_loop()
        self._inbox: deque[Frame | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost = False
        self._reading_paused = False
        self._paused_frames = -1  # frames sent while paused; -1: not paused
        self._close_timer: asyncio.TimerHandle | None = None
        self._stuck_timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._last_seen = 0.0
        self._out: list[bytes] = []  # frames queued in this loop pass, in order
        self._pending = 0  # their payload bytes
        self._flush_soon = False
        self._registry: MutableSet[Any] | None = None

    # -- the transport's side (asyncio.Protocol) ----------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._last_seen = self._loop.time()
        self._keepalive = self._loop.call_later(self.limits.ping_interval, self._check_alive)

    def track(self, registry: MutableSet[Any]) -> None:
        """Stay in ``registry`` (the server's open connections, whose shutdown
        closes them) while the transport is open."""
        self._registry = registry
        registry.add(self)

    def shutdown(self) -> None:
        """The server stops (uvicorn's call): clients reconnect elsewhere."""
        self.close(CloseCode.SERVICE_RESTART)

    def data_received(self, data: bytes) -> None:
        self._last_seen = self._loop.time()
        if self._input_done:
            return  # after a close or a violation nothing more is read (RFC 6455 5.5.1)
        events = self._events
        try:
            self._reader.feed(data, events)
        except FrameError as exc:
            self._handle(events)
            self._fail(exc.code, exc.reason)
        else:
            self._handle(events)
        self._flush()

    def _handle(self, events: list[Event]) -> None:
        for opcode, payload in events:
            if self._input_done:
                break
            if opcode == BINARY:
                self._deliver(payload, False)
            elif opcode == TEXT:
                self._deliver(payload, True)
            elif opcode == PING:
                if not self._close_sent:
                    self._out.append(control(PONG, payload))
            elif opcode == CLOSE:
                self._input_done = True
                if not self._close_sent:  # echo it (RFC 6455 5.5.1), then close TCP
                    self._close_sent = True
                    self._out.append(control(CLOSE, payload))
                self._out.append(_END)
                self.closing = True
                self._wake(None)
        events.clear()

    def eof_received(self) -> bool | None:
        self._input_done = True
        self._flush()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.closing = True
        for timer in (self._close_timer, self._stuck_timer, self._keepalive):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._stuck_timer = self._keepalive = None
        if self._registry is not None:
            self._registry.discard(self)
        self._wake(None)

    def pause_writing(self) -> None:
        """The peer reads slower than we write: count, and give it a deadline."""
        self._paused_frames = 0
        self._stuck_timer = self._loop.call_later(self.limits.write_timeout, self._stuck)

    def resume_writing(self) -> None:
        self._paused_frames = -1
        if self._stuck_timer is not None:
            self._stuck_timer.cancel()
            self._stuck_timer = None

    # -- the endpoint's side --------------------------------------------------------

    async def receive(self) -> Frame | None:
        """The next message; ``None`` once the socket is closing or gone."""
        inbox = self._inbox
        while not inbox:
            if self.closing:
                return None
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        message = inbox.popleft()
        if self._reading_paused and len(inbox) <= INBOX_LOW and not self._lost:
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        if message is None:
            inbox.append(None)  # every later call sees the end too
        return message

    async def receive_within(self, seconds: float) -> Frame | None:
        """``receive``, or ``TimeoutError`` when nothing came within ``seconds``.
        One timer, not a timeout context: every socket's first frame waits here."""
        if self._inbox:
            return await self.receive()
        timer = self._loop.call_later(seconds, self._receive_timed_out)
        try:
            return await self.receive()
        finally:
            timer.cancel()

    def _receive_timed_out(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError())

    def send(self, message: Message) -> None:
        self.send_frame(self.codec.encode(message.to_map()))

    def send_frame(self, frame: Frame) -> None:
        """Queue one message; every frame queued in this loop pass goes out in
        one write at the end of it (a burst to a device, or an outcome and its
        close, is one syscall, not one per frame)."""
        if self.closing:
            return
        if isinstance(frame, bytes):
            data, first = frame, _FIN_BINARY
        else:
            data, first = frame.encode(), _FIN_TEXT
        size = len(data)
        self._out += (header(first, size), data)
        self._pending += size
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush)
        if self._paused_frames >= 0:
            self._paused_frames += 1
            if self._paused_frames > self.limits.queue_frames:
                self.slow("frames")
                return
        transport = self.transport
        buffered = self._pending + (transport.get_write_buffer_size() if transport else 0)
        if buffered > self.limits.queue_bytes:
            self.slow("bytes")

    def slow(self, reason: SlowReason) -> None:
        """The peer does not keep up: close with 4013 (aborted if it does not
        read even that within the close timeout)."""
        if self.closing:
            return
        log.info("closing a slow consumer (%s)", reason)
        self._metrics.slow_consumer(reason)
        self.close(CloseCode.SLOW_CONSUMER)

    def close(self, code: int = CloseCode.NORMAL) -> None:
        """Start the closing handshake after what was sent; the peer has
        ``limits.close_timeout`` seconds to answer before the TCP connection is
        dropped. The endpoint's ``receive`` returns ``None`` from now on."""
        if self.closing:
            return
        self.closing = True
        self._inbox.clear()  # what came after our close is not acted on
        self._wake(None)
        if self._lost or self.transport is None:
            return
        if self._reading_paused:  # the peer's close frame must get through
            self._reading_paused = False
            self.transport.resume_reading()
        if not self._close_sent:
            self._close_sent = True
            self._out.append(close_frame(code))
            if not self._flush_soon:  # with what this pass sent before it
                self._flush_soon = True
                self._loop.call_soon(self._flush)
        if not self._lost:
            self._close_timer = self._loop.call_later(self.limits.close_timeout, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection now, unsent data and all."""
        self.closing = True
        if self.transport is not None and not self._lost:
            self.transport.abort()

    # -- inside ----------------------------------------------------------------------

    def _deliver(self, data: bytes, text: bool) -> None:
        if self.closing:
            return
        if text:
            try:
                message: Frame = data.decode()
            except UnicodeDecodeError:
                self._fail(INVALID_DATA, "invalid UTF-8")
                return
        else:
            message = data
        self._wake(message)
        if len(self._inbox) >= INBOX_HIGH and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()

    def _wake(self, message: Frame | None) -> None:
        if message is not None or not self._inbox or self._inbox[-1] is not None:
            self._inbox.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol: send a close with ``code`` after what
        is queued and close TCP at once, as websockets' ``fail`` does on a
        server; what the peer sends after it is not read."""
        self._input_done = True
        if not self._close_sent:
            self._close_sent = True
            self._out.append(close_frame(code, reason))
        self._out.append(_END)
        self.closing = True
        self._wake(None)  # messages read before the violation are still received

    def _flush(self) -> None:
        """Write everything queued in one call; ``b""`` (the protocol's end of
        stream: the closing handshake is done) closes TCP after it."""
        self._flush_soon = False
        out, self._out = self._out, []
        self._pending = 0
        transport = self.transport
        if transport is None or self._lost or not out:
            return
        try:
            end = out.index(_END)
        except ValueError:
            transport.write(b"".join(out))
            return
        if end:
            transport.write(b"".join(out[:end]))
        transport.close()

    def _stuck(self) -> None:
        self._stuck_timer = None
        log.info("aborting a connection whose peer stopped reading")
        self._metrics.slow_consumer("write_timeout")
        self.abort()

    def _check_alive(self) -> None:
        """Ping a peer quiet for a ping interval; drop one quiet for longer than
        the interval and the timeout together (a dead network path)."""
        limits = self.limits
        quiet = self._loop.time() - self._last_seen
        if quiet >= limits.ping_interval + limits.ping_timeout:
            log.info("aborting a connection whose peer went silent")
            self._keepalive = None
            self.abort()
            return
        if quiet < limits.ping_interval:
            self._keepalive = self._loop.call_later(limits.ping_interval - quiet, self._check_alive)
            return
        if not self._close_sent:
            self._out.append(control(PING))
            self._flush()
        self._keepalive = self._loop.call_later(limits.ping_timeout, self._check_alive)
