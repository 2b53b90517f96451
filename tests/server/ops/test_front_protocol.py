"""The front protocol: a lobby upgrade is read without h11 and switched, in
any split and with a frame pipelined behind it; every other head goes to h11
and gets the answer it got before (a real ``foyer serve``, raw sockets)."""

from __future__ import annotations

import base64
import json
import os
import socket
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.utils import accept_key

from server.ops.front_protocol import parse_upgrade
from tests.support import FoyerProcess

KEY = base64.b64encode(os.urandom(16)).decode()
UPGRADE = (
    "host: 127.0.0.1\r\nupgrade: websocket\r\nconnection: keep-alive, Upgrade\r\n"
    f"sec-websocket-version: 13\r\nsec-websocket-key: {KEY}\r\n"
)


def _head(path: str, fields: str = UPGRADE, line: str = "GET {} HTTP/1.1") -> bytes:
    return (line.format(path) + "\r\n" + fields + "\r\n").encode()


# -- the parse (pure) ----------------------------------------------------------------


def test_a_plain_upgrade_head_is_read() -> None:
    head = _head("/ws/guest/abc?x=1").removesuffix(b"\r\n\r\n")
    parsed = parse_upgrade(head)
    assert parsed is not None
    target, headers = parsed
    assert target == b"/ws/guest/abc?x=1"
    assert (b"connection", b"keep-alive, Upgrade") in headers
    assert (b"sec-websocket-key", KEY.encode()) in headers


@pytest.mark.parametrize(
    "head",
    [
        _head("/ws/host", line="get {} HTTP/1.1"),
        _head("/ws/host", line="GET {} HTTP/1.0"),
        _head("/ws/host", line="GET  {} HTTP/1.1"),
        _head("ws/host"),
        _head("/ws/ho st"),
        _head("/ws/host", UPGRADE.replace("host: 127.0.0.1\r\n", "")),  # no Host
        _head("/ws/host", UPGRADE + "Host: again\r\n"),  # two
        _head("/ws/host", UPGRADE + "content-length: 0\r\n"),
        _head("/ws/host", UPGRADE + "transfer-encoding: chunked\r\n"),
        _head("/ws/host", UPGRADE + "x-folded: a\r\n b\r\n"),  # obs-fold
        _head("/ws/host", UPGRADE + "x-space : a\r\n"),
        _head("/ws/host", UPGRADE + "x-ctl: a\x01b\r\n"),
        _head("/ws/host", UPGRADE + "no colon\r\n"),
        _head("/ws/host", UPGRADE.replace("websocket", "h2c")),
        _head("/ws/host", UPGRADE.replace("keep-alive, Upgrade", "keep-alive")),
        _head("/ws/host", UPGRADE + "connection: close\r\n"),  # the last one counts
    ],
)
def test_a_doubtful_head_is_left_to_h11(head: bytes) -> None:
    assert parse_upgrade(head.removesuffix(b"\r\n\r\n")) is None


# -- on a real server --------------------------------------------------------------


def _socket(foyer: FoyerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", foyer.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_head(sock: socket.socket) -> tuple[str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def _read_frame(sock: socket.socket, data: bytes) -> bytes:
    """The payload of the server's next (unmasked, unfragmented) frame."""

    def need(n: int) -> None:
        nonlocal data
        while len(data) < n:
            more = sock.recv(65536)
            assert more, "closed before a whole frame"
            data += more

    need(2)
    length, at = data[1] & 0x7F, 2
    if length >= 126:
        size = 2 if length == 126 else 8
        need(2 + size)
        length, at = int.from_bytes(data[2 : 2 + size], "big"), 2 + size
    need(at + length)
    return data[at : at + length]


def _knock_frame() -> bytes:
    knock = json.dumps({"type": "knock", "name": "Raw"}).encode()
    return Frame(Opcode.TEXT, knock).serialize(mask=True, extensions=[])


def test_an_upgrade_split_byte_by_byte_is_switched(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    head = _head(f"/ws/guest/{host['slug']}")
    with _socket(foyer) as sock:
        for byte in head:
            sock.sendall(bytes([byte]))
        answer, _ = _read_head(sock)
    assert answer.startswith("HTTP/1.1 101 ")
    assert f"sec-websocket-accept: {accept_key(KEY)}" in answer


def test_a_frame_pipelined_behind_the_handshake_is_read(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    fields = UPGRADE + "sec-websocket-protocol: foyer.v1.json\r\n"
    with _socket(foyer) as sock:
        sock.sendall(_head(f"/ws/guest/{host['slug']}", fields) + _knock_frame())
        answer, rest = _read_head(sock)
        assert answer.startswith("HTTP/1.1 101 ")
        payload = _read_frame(sock, rest)
    assert json.loads(payload)["type"] == "waiting"


def test_a_head_without_host_gets_h11s_400(foyer: FoyerProcess) -> None:
    with _socket(foyer) as sock:
        sock.sendall(_head("/ws/host", UPGRADE.replace("host: 127.0.0.1\r\n", "")))
        answer, _ = _read_head(sock)
    assert answer.startswith("HTTP/1.1 400 ")


def test_an_upgrade_with_a_body_header_goes_through_h11_to_the_gate(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    with _socket(foyer) as sock:
        sock.sendall(_head(f"/ws/guest/{host['slug']}", UPGRADE + "content-length: 0\r\n"))
        answer, _ = _read_head(sock)
    assert answer.startswith("HTTP/1.1 101 ")


def test_http_split_in_pieces_then_an_upgrade_on_the_same_connection(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    with _socket(foyer) as sock:
        for piece in (b"GE", b"T /hea", b"lthz HTTP/1.1\r\nhost: x\r\n", b"\r\n"):
            sock.sendall(piece)
        answer, rest = _read_head(sock)
        assert answer.startswith("HTTP/1.1 200 ")
        length = int(answer.lower().split("content-length:")[1].split("\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        # A kept-alive connection's next request is h11's: its upgrade still
        # reaches the gate.
        sock.sendall(_head(f"/ws/guest/{host['slug']}"))
        answer, _ = _read_head(sock)
    assert answer.startswith("HTTP/1.1 101 ")


def test_a_refused_upgrade_on_the_fast_path_is_json(foyer: FoyerProcess) -> None:
    with _socket(foyer) as sock:
        sock.sendall(_head("/ws/nowhere"))
        answer, body = _read_head(sock)
        length = int(answer.lower().split("content-length:")[1].split("\r\n")[0])
        while len(body) < length:
            body += sock.recv(65536)
    assert answer.startswith("HTTP/1.1 404 ")
    assert json.loads(body)["code"] == "not_found"
