"""One socket on its transport: frames out in order, the send bounds (bytes,
frames while paused, a peer that stops reading), the closing handshake and
its timeout, the inbox and its back-pressure, keep-alive. Real TCP on
127.0.0.1: the server side is a ``Connection`` (already open, as after the
handshake), the peer a sans-I/O client we read by hand."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from protocol.codec import CODECS, MSGPACK
from protocol.errors import CloseCode
from protocol.messages import Ping
from server.lobby.connection import INBOX_HIGH, Connection, SocketLimits
from server.metrics import Metrics
from tests.support import metric_samples


@dataclass
class Peer:
    """The client end: a sans-I/O protocol over a plain stream."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    proto: ClientProtocol = field(
        default_factory=lambda: ClientProtocol(parse_uri("ws://127.0.0.1/"), state=State.OPEN)
    )
    frames: list[Frame] = field(default_factory=list)
    answer: bool = True  # flush what the protocol owes (pongs, the close echo)

    def flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.writer.write(data)

    async def read(self, until: int = 1, timeout: float = 5.0) -> list[Frame]:
        """Read until ``until`` frames (pings and pongs included) arrived, or EOF."""
        async with asyncio.timeout(timeout):
            while len(self.frames) < until:
                data = await self.reader.read(65536)
                if not data:
                    self.proto.receive_eof()
                    break
                self.proto.receive_data(data)
                self.frames += [e for e in self.proto.events_received() if isinstance(e, Frame)]
                if self.answer:
                    self.flush()
        return self.frames

    async def eof(self, timeout: float = 5.0) -> None:
        await self.read(until=1 << 30, timeout=timeout)

    def close_code(self) -> int | None:
        closes = [f for f in self.frames if f.opcode is Opcode.CLOSE]
        return Close.parse(closes[0].data).code if closes else None

    def send(self, data: bytes, *, text: bool = False, fin: bool = True) -> None:
        if text:
            self.proto.send_text(data, fin=fin)
        else:
            self.proto.send_binary(data, fin=fin)
        self.flush()


class Watched(Connection):
    """A Connection that says when its transport came and went."""

    def __init__(self, limits: SocketLimits, metrics: Metrics) -> None:
        super().__init__(CODECS[MSGPACK], limits, metrics)
        self.made = asyncio.Event()
        self.gone = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.made.set()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.gone.set()


@asynccontextmanager
async def pair(
    limits: SocketLimits | None = None,
    metrics: Metrics | None = None,
    small_buffers: bool = False,
) -> AsyncIterator[tuple[Watched, Peer]]:
    made: asyncio.Future[Watched] = asyncio.get_running_loop().create_future()

    def factory() -> Watched:
        conn = Watched(limits or SocketLimits(), metrics or Metrics())
        made.set_result(conn)
        return conn

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket()
    if small_buffers:  # so that the server's transport buffer fills quickly
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    conn = await made
    async with asyncio.timeout(5):
        await conn.made.wait()  # connection_made comes a step after the factory
    assert conn.transport is not None
    if small_buffers:
        raw = conn.transport.get_extra_info("socket")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        yield conn, Peer(reader, writer)
    finally:
        writer.close()
        conn.abort()
        server.close()
        await server.wait_closed()


async def _lost(conn: Watched, timeout: float = 5.0) -> None:
    """Until the transport is gone; ``receive`` has ended by then."""
    async with asyncio.timeout(timeout):
        await conn.gone.wait()
    assert await conn.receive() is None


async def test_frames_go_out_in_order() -> None:
    async with pair() as (conn, peer):
        for i in range(50):
            conn.send_frame(f"frame {i}".encode())
        conn.send(Ping(ref="p"))
        frames = await peer.read(51)
        assert [f.data for f in frames[:50]] == [f"frame {i}".encode() for i in range(50)]
        assert conn.codec.decode(frames[50].data)["type"] == "ping"


async def test_close_sends_the_code_and_ends_the_connection() -> None:
    async with pair() as (conn, peer):
        conn.send_frame(b"last words")
        conn.close(CloseCode.UNAUTHORIZED)
        conn.send_frame(b"after the close: dropped")
        await peer.eof()
        assert [f.data for f in peer.frames if f.opcode is Opcode.BINARY] == [b"last words"]
        assert peer.close_code() == CloseCode.UNAUTHORIZED
        assert await conn.receive() is None


async def test_a_peer_that_does_not_answer_the_close_is_dropped_after_the_timeout() -> None:
    async with pair(SocketLimits(close_timeout=0.2)) as (conn, peer):
        peer.answer = False  # reads, never echoes the close
        conn.close()
        await peer.eof()  # the server dropped TCP: EOF, no echo was ever sent
        assert peer.close_code() == CloseCode.NORMAL


async def test_too_many_bytes_close_slow_consumer() -> None:
    """A peer that does not read: unsent bytes pass the bound, 4013."""
    metrics = Metrics()
    limits = SocketLimits(queue_bytes=64 * 1024, close_timeout=5.0)
    async with pair(limits, metrics, small_buffers=True) as (conn, peer):
        sent = 0
        while not conn.closing and sent < 1000:
            conn.send_frame(b"x" * 4096)
            sent += 1
        assert conn.closing and sent < 1000
        await peer.eof(timeout=10)  # reading now: what was sent, then the close
        assert peer.close_code() == CloseCode.SLOW_CONSUMER
    counted = metric_samples(metrics.exposition()[0].decode())
    assert counted['foyer_slow_consumer_disconnects_total{reason="bytes"}'] == 1


async def test_too_many_frames_while_paused_close_slow_consumer() -> None:
    """Tiny frames: the byte bound would take long; the frame bound trips."""
    metrics = Metrics()
    limits = SocketLimits(queue_frames=20, queue_bytes=1 << 30)
    async with pair(limits, metrics, small_buffers=True) as (conn, peer):
        assert conn.transport is not None
        conn.transport.set_write_buffer_limits(high=1024)
        sent = 0
        while not conn.closing and sent < 100_000:
            conn.send_frame(b"f")
            sent += 1
            await asyncio.sleep(0)  # each pass's frames go out at its end
        assert conn.closing
        await peer.eof(timeout=10)
        assert peer.close_code() == CloseCode.SLOW_CONSUMER
    counted = metric_samples(metrics.exposition()[0].decode())
    assert counted['foyer_slow_consumer_disconnects_total{reason="frames"}'] == 1
    assert counted['foyer_slow_consumer_disconnects_total{reason="bytes"}'] == 0


async def test_a_peer_that_stops_reading_is_aborted() -> None:
    metrics = Metrics()
    limits = SocketLimits(queue_bytes=1 << 30, queue_frames=1 << 30, write_timeout=0.2)
    async with pair(limits, metrics, small_buffers=True) as (conn, _peer):
        assert conn.transport is not None
        for _ in range(10_000):
            if conn.transport.get_write_buffer_size() >= 256 * 1024:
                break
            conn.send_frame(b"x" * 4096)
            await asyncio.sleep(0)
        await _lost(conn)
        assert conn.closing
    counted = metric_samples(metrics.exposition()[0].decode())
    assert counted['foyer_slow_consumer_disconnects_total{reason="write_timeout"}'] == 1


async def test_a_reader_that_keeps_up_never_trips() -> None:
    limits = SocketLimits(queue_bytes=64 * 1024, queue_frames=8)
    async with pair(limits) as (conn, peer):
        for _ in range(20):
            for _ in range(8):
                conn.send_frame(b"y" * 1024)
            await peer.read(len(peer.frames) + 8)
        assert not conn.closing


async def test_messages_arrive_in_order_whole_and_decoded() -> None:
    async with pair() as (conn, peer):
        peer.send(b"one")
        peer.send(b"two", text=True)
        peer.send(b"thr", fin=False)
        peer.proto.send_continuation(b"ee", fin=True)
        peer.flush()
        assert [await conn.receive() for _ in range(3)] == [b"one", "two", b"three"]


async def test_the_peers_close_ends_receive_and_is_echoed() -> None:
    async with pair() as (conn, peer):
        peer.send(b"before")
        peer.proto.send_close(CloseCode.GOING_AWAY)
        peer.flush()
        assert await conn.receive() == b"before"
        assert await conn.receive() is None
        assert await conn.receive() is None  # and stays ended
        await peer.eof()
        assert peer.close_code() == CloseCode.GOING_AWAY


async def test_invalid_utf8_closes_with_1007() -> None:
    async with pair() as (conn, peer):
        peer.send(b"\xff\xfe", text=True)
        assert await conn.receive() is None
        await peer.eof()
        assert peer.close_code() == 1007


async def test_a_peers_ping_is_answered_with_its_payload() -> None:
    async with pair() as (conn, peer):
        peer.proto.send_ping(b"are you there")
        peer.flush()
        frames = await peer.read(1)
        assert (frames[0].opcode, frames[0].data) == (Opcode.PONG, b"are you there")
        assert not conn.closing


async def test_a_breach_closes_with_1002_after_the_messages_before_it() -> None:
    async with pair() as (conn, peer):
        peer.send(b"kept")
        peer.writer.write(bytes((0x81, 5)) + b"plain")  # a client frame must be masked
        assert await conn.receive() == b"kept"
        assert await conn.receive() is None
        await peer.eof()  # the server closes TCP at once, without waiting for an echo
        assert peer.close_code() == 1002
        await _lost(conn)


async def test_a_message_over_max_size_closes_with_1009() -> None:
    async with pair(SocketLimits(max_size=1000)) as (conn, peer):
        peer.send(b"x" * 600, fin=False)
        peer.proto.send_continuation(b"y" * 600, fin=True)
        peer.flush()
        assert await conn.receive() is None
        await peer.eof()
        assert peer.close_code() == 1009


async def test_a_busy_endpoint_pauses_reading_and_loses_nothing() -> None:
    async with pair() as (conn, peer):
        count = INBOX_HIGH * 4
        for i in range(count):
            peer.send(str(i).encode())
        await peer.writer.drain()
        await asyncio.sleep(0.2)  # nobody receives meanwhile: reading pauses
        got = [await conn.receive() for _ in range(count)]
        assert got == [str(i).encode() for i in range(count)]


async def test_a_quiet_peer_is_pinged_and_a_silent_one_dropped() -> None:
    limits = SocketLimits(ping_interval=0.2, ping_timeout=0.2)
    async with pair(limits) as (conn, peer):
        await peer.read(1)  # answered with a pong: the connection stays
        assert peer.frames[0].opcode is Opcode.PING
        await peer.read(2)
        assert not conn.closing
        peer.answer = False  # now silent
        await peer.eof()
        await _lost(conn)


async def test_shutdown_closes_with_service_restart() -> None:
    async with pair() as (conn, peer):
        registry: set[object] = set()
        conn.track(registry)
        assert conn in registry
        conn.shutdown()
        await peer.eof()
        assert peer.close_code() == CloseCode.SERVICE_RESTART
        await _lost(conn)
        assert conn not in registry


async def test_receive_within_times_out_then_the_socket_still_works() -> None:
    async with pair() as (conn, peer):
        with pytest.raises(TimeoutError):
            await conn.receive_within(0.05)
        peer.send(b"late")
        assert await conn.receive_within(5) == b"late"  # the timer of the first is gone
        peer.send(b"next")
        assert await conn.receive_within(5) == b"next"
