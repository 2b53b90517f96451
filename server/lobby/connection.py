"""One WebSocket: a bounded send queue and the one task that writes it.

A peer that reads too slowly fills its queue and is disconnected with 4013
(centrifuge's DisconnectSlow) instead of making us buffer without limit. The
queue is bounded in frames and in bytes (centrifuge's ``ClientQueueMaxSize``):
outgoing ``welcome`` and ``settings`` frames are not held to the 64 KiB limit
on incoming ones, so a frame count alone does not bound memory.

A peer that stops reading altogether stalls the write itself (the transport's
buffer is full and the server waits for it to drain). Every write therefore
has a timeout; when it passes, the transport is aborted (a plain close would
wait for that same buffer to drain), so the socket's read loop ends, its
clean-up runs, and a host device counts as offline at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from starlette.websockets import WebSocket

from protocol.codec import Codec, Frame
from protocol.errors import CloseCode
from protocol.messages import Message
from server.metrics import OFF_METRICS, Metrics, SlowReason

log = logging.getLogger("foyer.connection")


class Connection:
    """Frames go through ``send``; ``writer`` owns the socket's output side."""

    __slots__ = (
        "_close_code",
        "_metrics",
        "_queue",
        "_queued_bytes",
        "_wake",
        "_writer",
        "close_timeout",
        "closing",
        "codec",
        "limit",
        "limit_bytes",
        "write_timeout",
        "ws",
    )

    def __init__(
        self,
        ws: WebSocket,
        codec: Codec,
        limit: int,
        limit_bytes: int = 1 << 20,
        close_timeout: float = 2.0,
        write_timeout: float = 10.0,
        metrics: Metrics = OFF_METRICS,
    ) -> None:
        self.ws = ws
        self.codec = codec
        self.limit = limit  # frames queued at most
        self.limit_bytes = limit_bytes  # and bytes (len() of the frames) queued at most
        self.close_timeout = close_timeout  # seconds a close waits for the queue to go out
        self.write_timeout = write_timeout  # seconds one write may wait for the peer
        self.closing = False
        self._queue: deque[Frame] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._close_code: int | None = None
        self._writer: asyncio.Task[None] | None = None
        self._metrics = metrics

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="foyer-writer")

    async def stop(self) -> None:
        """Let a requested close go out (briefly), then cancel the writer.
        Called by the endpoint that owns this socket, in its ``finally``."""
        writer = self._writer
        if writer is None or writer.done():
            return
        if self.closing:
            with contextlib.suppress(Exception):  # TimeoutError included
                async with asyncio.timeout(self.close_timeout):
                    await asyncio.shield(writer)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer

    def send(self, message: Message) -> None:
        self.send_frame(self.codec.encode(message.to_map()))

    def send_frame(self, frame: Frame) -> None:
        if self.closing:
            return
        size = len(frame)
        if len(self._queue) >= self.limit or self._queued_bytes + size > self.limit_bytes:
            self.slow("frames" if len(self._queue) >= self.limit else "bytes")
            return
        self._queue.append(frame)
        self._queued_bytes += size
        self._wake.set()

    def slow(self, reason: SlowReason) -> None:
        """The peer does not keep up: drop what is queued and close with 4013."""
        log.info("closing a slow consumer (%s)", reason)
        self._metrics.slow_consumer(reason)
        self._queue.clear()
        self._queued_bytes = 0
        self.close(CloseCode.SLOW_CONSUMER)

    def close(self, code: int = CloseCode.NORMAL) -> None:
        """Close after what is queued has been sent."""
        if self.closing:
            return
        self.closing = True
        self._close_code = code
        self._wake.set()

    async def _write_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    frame = self._queue.popleft()
                    self._queued_bytes -= len(frame)
                    async with asyncio.timeout(self.write_timeout):
                        if isinstance(frame, bytes):
                            await ws.send_bytes(frame)
                        else:
                            await ws.send_text(frame)
                if self._close_code is not None:
                    async with asyncio.timeout(self.write_timeout):
                        await ws.close(self._close_code)
                    return
        except TimeoutError:
            log.info("aborting a connection whose peer stopped reading")
            self._metrics.slow_consumer("write_timeout")
            self.closing = True
            self.abort()
        except Exception:  # the peer went away; the read loop sees it too
            self.closing = True

    def abort(self) -> None:
        """Drop the TCP connection now, unsent data and all. ASGI has no abort;
        uvicorn's protocol object (whose bound ``send`` the socket holds) has the
        transport."""
        protocol = getattr(getattr(self.ws, "_send", None), "__self__", None)
        transport = getattr(protocol, "transport", None)
        if transport is not None and hasattr(transport, "abort"):
            transport.abort()
        else:
            log.warning("could not abort a stuck connection (no transport)")
