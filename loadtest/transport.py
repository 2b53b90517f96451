"""Client WebSockets for the driver: a lean RFC 6455 client, and python-websockets for reference.

On a 2-core machine the driver shares the CPU with Redis and two server processes, so
every microsecond it spends is taken from what it measures. ``python-websockets``' client
costs about as much per connect/knock/close cycle as the server does; the lean client
here does the same wire work (random key, accept check, masked frames, close handshake,
pong) with a fixed request template and a frame parser for the small unfragmented frames
PROTOCOL.md uses. ``--client websockets`` switches back, to check that the two agree.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import urllib.parse
from collections import deque
from typing import Protocol, cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State
from websockets.speedups import apply_mask
from websockets.typing import Subprotocol

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_FRAME = 1 << 20


class Closed(Exception):
    """The WebSocket is closed; ``code`` is the peer's close code (1006 if none)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class HandshakeFailed(Exception):
    """The server did not switch protocols; ``status`` is its HTTP status (0 if none)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Socket(Protocol):
    def send(self, data: bytes | str) -> None: ...

    async def recv(self) -> bytes | str: ...

    async def close(self) -> None: ...


class Endpoint:
    """A parsed ``ws://host:port`` base URL."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws":
            raise ValueError(f"only ws:// URLs are supported: {url}")
        self.url = url.rstrip("/")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = f"{netloc}:{self.port}"


# -- lean ----------------------------------------------------------------------------


class LeanSocket(asyncio.Protocol):
    """A client WebSocket as one asyncio.Protocol: no tasks, no locks, no extensions."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes, accept: bytes) -> None:
        self._loop = loop
        self._request = request
        self._accept = accept
        self._buf = bytearray()
        self._handshake: asyncio.Future[None] = loop.create_future()
        self._lost: asyncio.Future[None] = loop.create_future()
        self._queue: deque[bytes | str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._open = False
        self._close_sent = False
        self.close_code = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            del buf[: end + 4]
            if not head.startswith(b"http/1.1 101"):
                status = int(head[9:12]) if head[9:12].isdigit() else 0
                self._fail_handshake(HandshakeFailed(status))
                return
            if b"sec-websocket-accept: " + self._accept.lower() not in head:
                self._fail_handshake(HandshakeFailed(101))
                return
            self._open = True
            if not self._handshake.done():
                self._handshake.set_result(None)
        while len(buf) >= 2:
            length = buf[1] & 0x7F
            start = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                start = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                start = 10
            if length > MAX_FRAME:
                self._abort()
                return
            if len(buf) < start + length:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            if opcode == 2:
                self._deliver(payload)
            elif opcode == 1:
                self._deliver(payload.decode())
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if length >= 2 else 1005
                self._send_close(self.close_code if self.close_code != 1005 else 1000)
                self._wake()
            elif opcode == 9:
                self._write_frame(0xA, payload)
            # opcode 10 (pong) and fragments are not used by PROTOCOL.md servers: ignored.

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.close_code:
            self.close_code = 1006
        self._fail_handshake(HandshakeFailed(0))
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake()

    # the Socket interface

    def send(self, data: bytes | str) -> None:
        if self._close_sent or self._transport is None:
            raise Closed(self.close_code or 1006)
        if isinstance(data, str):
            self._write_frame(0x1, data.encode())
        else:
            self._write_frame(0x2, data)

    async def recv(self) -> bytes | str:
        while not self._queue:
            if self.close_code:
                raise Closed(self.close_code)
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    async def close(self, limit_s: float = 5.0) -> None:
        """Close handshake: send close (if not yet), wait for the server to drop TCP."""
        if self._transport is None:
            return
        self._send_close(1000)
        try:
            async with asyncio.timeout(limit_s):
                await asyncio.shield(self._lost)
        except TimeoutError:
            self._abort()

    # internals

    async def opened(self) -> None:
        await self._handshake

    def _deliver(self, message: bytes | str) -> None:
        self._queue.append(message)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail_handshake(self, exc: Exception) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(exc)
            self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _send_close(self, code: int) -> None:
        if not self._close_sent and self._transport is not None:
            self._write_frame(0x8, code.to_bytes(2, "big"))
            self._close_sent = True

    def _write_frame(self, opcode: int, payload: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        length = len(payload)
        if length < 126:
            head = bytes((0x80 | opcode, 0x80 | length))
        elif length < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        mask = os.urandom(4)
        transport.write(head + mask + apply_mask(payload, mask))


async def open_lean(endpoint: Endpoint, path: str, subprotocol: str, limit_s: float) -> LeanSocket:
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {endpoint.host_header}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    sock = LeanSocket(loop, request, accept)
    async with asyncio.timeout(limit_s):
        await loop.create_connection(lambda: sock, endpoint.host, endpoint.port)
        await sock.opened()
    return sock


# -- python-websockets ---------------------------------------------------------------


class WebsocketsSocket:
    """python-websockets' client behind the same three calls."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    def send(self, data: bytes | str) -> None:
        ws = self._ws
        if ws.protocol.state is not State.OPEN:
            raise Closed(ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else 1006)
        if isinstance(data, str):
            ws.protocol.send_text(data.encode())
        else:
            ws.protocol.send_binary(data)
        ws.send_data()

    async def recv(self) -> bytes | str:
        try:
            return await self._ws.recv()
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code if exc.rcvd else 1006) from None

    async def close(self) -> None:
        await self._ws.close()


async def open_websockets(
    endpoint: Endpoint, path: str, subprotocol: str, limit_s: float
) -> WebsocketsSocket:
    try:
        ws = await connect(
            endpoint.url + path,
            subprotocols=[Subprotocol(subprotocol)],
            compression=None,
            proxy=None,
            user_agent_header=None,
            open_timeout=limit_s,
            close_timeout=limit_s,
            ping_interval=None,
            max_size=MAX_FRAME,
        )
    except InvalidStatus as exc:
        raise HandshakeFailed(exc.response.status_code) from None
    return WebsocketsSocket(ws)


async def open_socket(
    kind: str, endpoint: Endpoint, path: str, subprotocol: str, limit_s: float
) -> Socket:
    if kind == "websockets":
        return await open_websockets(endpoint, path, subprotocol, limit_s)
    return await open_lean(endpoint, path, subprotocol, limit_s)
