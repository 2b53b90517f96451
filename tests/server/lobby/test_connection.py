"""The per-socket send queue: bounded in frames and in bytes, drained briefly
on close (a fake socket that can be made to block; no Redis, no server)."""

from __future__ import annotations

import asyncio
from typing import cast

from starlette.websockets import WebSocket

from protocol.codec import CODECS, JSON, MSGPACK, Frame
from protocol.errors import CloseCode
from protocol.messages import Ping
from server.lobby.connection import Connection
from server.metrics import Metrics
from tests.support import metric_samples


class FakeSocket:
    """Records what the writer sends; ``block()`` makes the next send hang
    until ``unblock()``, like a peer that stopped reading."""

    def __init__(self) -> None:
        self.sent: list[Frame] = []
        self.closed: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()  # a send is blocked on the gate
        self.changed = asyncio.Event()

    def block(self) -> None:
        self.gate.clear()

    def unblock(self) -> None:
        self.gate.set()

    async def _send(self, frame: Frame) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        self.sent.append(frame)
        self.changed.set()

    async def send_bytes(self, data: bytes) -> None:
        await self._send(data)

    async def send_text(self, data: str) -> None:
        await self._send(data)

    async def close(self, code: int = 1000) -> None:
        self.closed.append(code)
        self.changed.set()

    async def until(self, sent: int = 0, closed: bool = False) -> None:
        async with asyncio.timeout(2):
            while len(self.sent) < sent or (closed and not self.closed):
                self.changed.clear()
                await self.changed.wait()


def _conn(
    ws: FakeSocket,
    limit: int = 256,
    limit_bytes: int = 1 << 20,
    close_timeout: float = 2.0,
    codec: str = MSGPACK,
) -> Connection:
    conn = Connection(
        cast(WebSocket, ws), CODECS[codec], limit, limit_bytes, close_timeout=close_timeout
    )
    conn.start()
    return conn


async def _stalled(ws: FakeSocket, conn: Connection, first: Frame) -> None:
    """The writer holds ``first`` in a send that does not return."""
    ws.block()
    conn.send_frame(first)
    async with asyncio.timeout(2):
        await ws.waiting.wait()


async def test_frames_go_out_in_order() -> None:
    ws = FakeSocket()
    conn = _conn(ws)
    conn.send(Ping())
    conn.send_frame(b"raw")
    await ws.until(sent=2)
    conn.close()
    await conn.stop()
    assert ws.sent == [CODECS[MSGPACK].encode({"type": "ping"}), b"raw"]
    assert ws.closed == [CloseCode.NORMAL]


async def test_too_many_frames_close_slow_consumer() -> None:
    ws = FakeSocket()
    conn = _conn(ws, limit=8)
    await _stalled(ws, conn, b"first")
    for i in range(8):
        conn.send_frame(b"%d" % i)
    assert not conn.closing
    conn.send_frame(b"one too many")
    assert conn.closing
    ws.unblock()
    await ws.until(closed=True)
    await conn.stop()
    assert ws.sent == [b"first"]  # the queue was dropped
    assert ws.closed == [CloseCode.SLOW_CONSUMER]


async def test_too_many_bytes_close_slow_consumer() -> None:
    """Few frames, but big ones: the byte bound trips long before the frame bound."""
    ws = FakeSocket()
    conn = _conn(ws, limit=256, limit_bytes=1000)
    await _stalled(ws, conn, b"first")
    for _ in range(3):
        conn.send_frame(b"x" * 300)
    conn.send_frame(b"x" * 100)  # exactly 1000 bytes queued: still within the bound
    assert not conn.closing
    conn.send_frame(b"y")
    assert conn.closing
    conn.send_frame(b"z")  # ignored once closing
    ws.unblock()
    await ws.until(closed=True)
    await conn.stop()
    assert ws.sent == [b"first"]
    assert ws.closed == [CloseCode.SLOW_CONSUMER]


async def test_text_frames_count_their_length() -> None:
    ws = FakeSocket()
    conn = _conn(ws, limit=256, limit_bytes=1000, codec=JSON)
    await _stalled(ws, conn, "first")
    conn.send_frame("é" * 600)
    conn.send_frame("a" * 400)
    assert not conn.closing
    conn.send_frame("!")
    assert conn.closing
    ws.unblock()
    await ws.until(closed=True)
    await conn.stop()
    assert ws.sent == ["first"]
    assert ws.closed == [CloseCode.SLOW_CONSUMER]


async def test_sent_frames_free_their_bytes() -> None:
    """Only what waits in the queue counts: a reader that keeps up never trips."""
    ws = FakeSocket()
    conn = _conn(ws, limit=256, limit_bytes=1000)
    for i in range(20):
        conn.send_frame(b"x" * 600)
        await ws.until(sent=i + 1)
    assert not conn.closing
    conn.close()
    await conn.stop()
    assert len(ws.sent) == 20
    assert ws.closed == [CloseCode.NORMAL]


async def test_stop_waits_for_close_timeout_only() -> None:
    """A close waits for a stuck peer for ``close_timeout`` (Settings), not a fixed 2 s."""
    ws = FakeSocket()
    conn = _conn(ws, close_timeout=0.05)
    await _stalled(ws, conn, b"stuck")
    conn.close()
    async with asyncio.timeout(1.5):  # well under the old hard-coded 2 s
        await conn.stop()
    assert ws.sent == []
    assert ws.closed == []


async def test_the_writer_task_has_a_name() -> None:
    ws = FakeSocket()
    conn = _conn(ws)
    names = {task.get_name() for task in asyncio.all_tasks()}
    await conn.stop()
    assert "foyer-writer" in names


async def test_each_slow_consumer_is_counted_by_reason() -> None:
    """Frames, bytes and a write that timed out: one 4013 each, under its reason."""
    metrics = Metrics()
    by_frames, by_bytes, stuck = FakeSocket(), FakeSocket(), FakeSocket()
    frames = Connection(cast(WebSocket, by_frames), CODECS[MSGPACK], 2, metrics=metrics)
    size = Connection(cast(WebSocket, by_bytes), CODECS[MSGPACK], 256, 65536, metrics=metrics)
    slow = Connection(
        cast(WebSocket, stuck), CODECS[MSGPACK], 256, write_timeout=0.05, metrics=metrics
    )
    for conn in (frames, size, slow):
        conn.start()
    for ws, conn in ((by_frames, frames), (by_bytes, size), (stuck, slow)):
        await _stalled(ws, conn, b"first")
    for _ in range(3):
        frames.send_frame(b"f")
    size.send_frame(b"x" * 65537)
    by_frames.unblock()
    by_bytes.unblock()
    slow.close()  # queued behind the stuck write: the close waits, the write times out
    for conn in (frames, size, slow):
        await conn.stop()
    stuck.unblock()
    counted = metric_samples(metrics.exposition()[0].decode())
    for reason in ("frames", "bytes", "write_timeout"):
        assert counted[f'foyer_slow_consumer_disconnects_total{{reason="{reason}"}}'] == 1
    assert counted['foyer_slow_consumer_disconnects_total{reason="held"}'] == 0
