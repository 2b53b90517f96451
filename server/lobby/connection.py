"""One WebSocket, served on picows.

picows (Cython) parses the handshake and the incoming frames and answers
pings; this class is its listener and the driver the lobby sees. Data frames
going out are framed here (a server frame is a two-to-ten-byte header and the
payload) and what is sent in one loop pass goes to the transport in one write
at the end of the pass. There is no writer task and no send queue of ours, so
a guest waiting in a lobby costs a transport, picows's protocol and the one
task that reads its frames (the endpoint). Issue 11 measured the layers
(``loadtest/socket_layers.py``, docs/performance.md): uvicorn's ASGI stack held
25 KiB per waiting guest and a burst of 10,000 frames was 10,000 syscalls;
picows costs the least CPU per visit of every Python layer tried.

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
import struct
from collections import deque
from collections.abc import MutableSet
from dataclasses import dataclass
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from protocol.codec import Codec, Frame
from protocol.errors import CloseCode
from protocol.messages import Message
from server.metrics import OFF_METRICS, Metrics, SlowReason

log = logging.getLogger("foyer.connection")

INBOX_HIGH = 64  # messages waiting for the endpoint before reading pauses
INBOX_LOW = 16  # ... and resumes
PROTOCOL_ERROR = 1002  # RFC 6455: frames out of order
INVALID_DATA = 1007  # RFC 6455: a text message that is not UTF-8
_FIN_BINARY = 0x82  # RFC 6455 5.2: FIN + opcode of an unfragmented message
_FIN_TEXT = 0x81
_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE


def _header(first: int, size: int) -> bytes:
    """A server frame's header (servers never mask; no extensions here)."""
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return _pack_16(first, 126, size)
    return _pack_64(first, 127, size)


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


class Connection(WSListener):
    """An open WebSocket: ``send`` queues for this loop pass's write,
    ``receive`` waits for the next message, ``close`` starts the closing
    handshake. The endpoint owns it; the hub only sends and closes."""

    __slots__ = (
        "_close_timer",
        "_flush_soon",
        "_inbox",
        "_keepalive",
        "_last_seen",
        "_loop",
        "_lost",
        "_metrics",
        "_on_open",
        "_out",
        "_parts",
        "_parts_size",
        "_paused_frames",
        "_pending",
        "_reading_paused",
        "_registry",
        "_stuck_timer",
        "_text",
        "_waiter",
        "closing",
        "codec",
        "limits",
        "transport",
        "ws",
    )

    def __init__(
        self,
        codec: Codec,
        limits: SocketLimits | None = None,
        metrics: Metrics = OFF_METRICS,
        registry: MutableSet[Any] | None = None,
    ) -> None:
        self.codec = codec
        self.limits = limits or SocketLimits()
        self.closing = False
        self.ws: WSTransport | None = None
        self.transport: asyncio.Transport | None = None
        self._metrics = metrics
        self._loop = asyncio.get_running_loop()
        self._inbox: deque[Frame | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._parts: list[bytes] | None = None  # a fragmented message being read
        self._parts_size = 0
        self._text = False
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
        self._registry = registry

    # -- picows's side (WSListener) ------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        self.transport = transport.underlying_transport
        self._last_seen = self._loop.time()
        self._keepalive = self._loop.call_later(self.limits.ping_interval, self._check_alive)
        if self._registry is not None:
            self._registry.add(self)

    def shutdown(self) -> None:
        """The server stops (uvicorn's call): clients reconnect elsewhere."""
        self.close(CloseCode.SERVICE_RESTART)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self._last_seen = self._loop.time()
        kind = frame.msg_type
        if transport.is_close_frame_sent and not self.closing:
            # picows closed on the peer's protocol error (a frame over the size
            # limit, say) and may still hand us that frame: act on nothing more.
            self.closing = True
            self._inbox.clear()
            self._wake(None)
        if kind is _BINARY or kind is _TEXT:
            if self._parts is not None:
                self._fail(PROTOCOL_ERROR, "expected a continuation frame")
            elif frame.fin:
                self._deliver(frame.get_payload_as_bytes(), kind is _TEXT)
            else:
                self._parts, self._text = [frame.get_payload_as_bytes()], kind is _TEXT
                self._parts_size = len(self._parts[0])
        elif kind is _CONT:
            if self._parts is None:
                self._fail(PROTOCOL_ERROR, "unexpected continuation frame")
                return
            part = frame.get_payload_as_bytes()
            self._parts_size += len(part)
            if self._parts_size > self.limits.max_size:
                self._fail(CloseCode.TOO_LARGE, "message too big")
                return
            self._parts.append(part)
            if frame.fin:
                whole, self._parts = b"".join(self._parts), None
                self._deliver(whole, self._text)
        elif kind is _CLOSE:
            self._peer_closed(frame)
        # pings are answered by picows; a pong only proves the peer is alive

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._lost = True
        self.closing = True
        for timer in (self._close_timer, self._stuck_timer, self._keepalive):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._stuck_timer = self._keepalive = None
        self._out.clear()
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
        self._out += (_header(first, size), data)
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
        if self._lost or self.ws is None or self.transport is None:
            return
        if self._reading_paused:  # the peer's close frame must get through
            self._reading_paused = False
            self.transport.resume_reading()
        self._flush()  # what was sent before the close goes first
        if not self.ws.is_close_frame_sent:
            self.ws.send_close(WSCloseCode(code))
        self._close_timer = self._loop.call_later(self.limits.close_timeout, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection now, unsent data and all."""
        self.closing = True
        if self.transport is not None and not self._lost:
            self.transport.abort()

    # -- inside ----------------------------------------------------------------------

    def _peer_closed(self, frame: WSFrame) -> None:
        """The peer's close: echo it (unless ours crossed it) and end TCP."""
        self.closing = True
        self._wake(None)
        if self.ws is None:
            return
        self._flush()
        if not self.ws.is_close_frame_sent:
            code = frame.get_close_code()
            self.ws.send_close(code if code else WSCloseCode.OK)
        self.ws.disconnect()  # the server closes TCP once the handshake is done

    def _fail(self, code: int, reason: str) -> None:
        """A protocol error of the peer's: close with ``code`` and drop."""
        log.debug("closing a socket that broke the protocol: %s", reason)
        self._parts = None
        self.close(code)

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

    def _flush(self) -> None:
        """Write everything queued in one call."""
        self._flush_soon = False
        out, self._out = self._out, []
        self._pending = 0
        transport = self.transport
        if out and transport is not None and not self._lost:
            transport.write(b"".join(out))

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
        if self.ws is not None and not self.closing:
            self._flush()
            self.ws.send_ping()
        self._keepalive = self._loop.call_later(limits.ping_timeout, self._check_alive)
