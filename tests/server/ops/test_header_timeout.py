"""Connections that never finish their HTTP request are closed after
``FOYER_HEADER_TIMEOUT`` (issue 10, point 4): without it, one client holding
a few hundred half-sent requests uses up the process's file descriptors."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from foyer_client import GuestClient, HostClient, JoinRequest
from tests.support import FoyerProcess, spawn_foyer

HEADER_TIMEOUT = 1.0
HALF_OPEN = 60  # raw connections per kind
DEADLINE = HEADER_TIMEOUT + 15.0  # generous: a loaded 2-core machine


@pytest.fixture(scope="module")
def strict(redis_url: str) -> Iterator[FoyerProcess]:
    with spawn_foyer(redis_url, {"FOYER_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}) as proc:
        yield proc


def _connect(port: int, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first:
        sock.sendall(first)
    sock.setblocking(False)
    return sock


def _closed_by_server(socks: list[socket.socket], deadline: float) -> list[socket.socket]:
    """Wait until the server closed each socket (EOF or reset); returns those
    still open at the deadline."""
    sel = selectors.DefaultSelector()
    for sock in socks:
        sel.register(sock, selectors.EVENT_READ)
    open_ = set(socks)
    try:
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                sock: Any = key.fileobj
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError) as exc:
                    if isinstance(exc, BlockingIOError):
                        continue
                    data = b""
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    sel.unregister(sock)
                    open_.discard(sock)
    finally:
        sel.close()
    return list(open_)


def test_half_sent_requests_are_closed(strict: FoyerProcess) -> None:
    kinds = [
        b"",  # connected, sends nothing
        b"GET /healthz HTTP/1.1\r\n",  # request line only
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",  # headers never end
        b"GET /ws/host HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n",  # a handshake, unfinished
    ]
    socks = [_connect(strict.port, first) for first in kinds for _ in range(HALF_OPEN)]
    try:
        left = _closed_by_server(socks, time.monotonic() + DEADLINE)
        assert left == [], f"{len(left)} of {len(socks)} half-sent requests still open"
        # The server still serves.
        assert httpx.get(f"{strict.http_url}/healthz", timeout=10).status_code == 200
    finally:
        for sock in socks:
            sock.close()


def test_a_kept_alive_connection_gets_the_timeout_for_its_next_request(
    strict: FoyerProcess,
) -> None:
    sock = socket.create_connection(("127.0.0.1", strict.port), timeout=10)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and never ends it
        sock.setblocking(False)
        assert _closed_by_server([sock], time.monotonic() + DEADLINE) == []
    finally:
        sock.close()


async def test_open_sockets_outlive_the_header_timeout(strict: FoyerProcess) -> None:
    """The timer stops once the headers are in: a WebSocket opened before the
    half-sent requests is still served after they were closed."""
    token = strict.create_host("Patient")
    async with HostClient(strict.ws_url, token["token"]) as device:
        late = _connect(strict.port, b"GET / HTTP/1.1\r\n")
        try:
            assert _closed_by_server([late], time.monotonic() + DEADLINE) == []
        finally:
            late.close()
        async with GuestClient(strict.ws_url, token["slug"], name="After"):
            assert (await device.wait_for(JoinRequest)).guest["name"] == "After"
