"""The handshake the gate answers on h11's parsed request: every refusal is an
HTTP status with a JSON body, a good handshake is RFC 6455's ``101`` (a real
``foyer serve``, raw sockets for the requests no library would send)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

from websockets.asyncio.client import connect
from websockets.utils import accept_key

from tests.support import FoyerProcess


async def _handshake(foyer: FoyerProcess, path: str, headers: dict[str, str]) -> tuple[str, str]:
    """Send one upgrade request; the status line plus headers, and the body."""
    host, port = foyer.http_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"GET {path} HTTP/1.1", f"host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        async with asyncio.timeout(10):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                ),
                0,
            )
            body = (await reader.readexactly(length)).decode() if length else ""
    finally:
        writer.close()
    return head, body


def _upgrade(**extra: str) -> dict[str, str]:
    headers = {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-version": "13",
        "sec-websocket-key": base64.b64encode(os.urandom(16)).decode(),
    }
    headers.update(extra)
    return headers


async def test_a_good_handshake_is_switched(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    headers = _upgrade(**{"sec-websocket-protocol": "chat.v9, foyer.v1.json"})
    head, _ = await _handshake(foyer, f"/ws/guest/{host['slug']}", headers)
    assert head.startswith("HTTP/1.1 101 ")
    assert f"sec-websocket-accept: {accept_key(headers['sec-websocket-key'])}" in head
    assert "sec-websocket-protocol: foyer.v1.json" in head.lower()


async def test_an_unknown_path_is_404_with_a_json_body(foyer: FoyerProcess) -> None:
    for path in ("/ws/nowhere", "/ws/guest/", "/ws/guest/a/b", "/"):
        head, body = await _handshake(foyer, path, _upgrade())
        assert head.startswith("HTTP/1.1 404 "), (path, head)
        assert json.loads(body)["code"] == "not_found"


async def test_a_bad_key_or_version_is_refused(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    path = f"/ws/guest/{host['slug']}"
    head, body = await _handshake(foyer, path, _upgrade(**{"sec-websocket-key": "short"}))
    assert head.startswith("HTTP/1.1 400 ") and json.loads(body)["code"] == "bad_request"
    head, body = await _handshake(foyer, path, _upgrade(**{"sec-websocket-version": "8"}))
    assert head.startswith("HTTP/1.1 426 ") and "sec-websocket-version: 13" in head.lower()
    assert json.loads(body)["code"] == "bad_request"


async def test_an_unknown_subprotocol_is_403_with_its_code(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    headers = _upgrade(**{"sec-websocket-protocol": "chat.v9"})
    head, body = await _handshake(foyer, f"/ws/guest/{host['slug']}", headers)
    assert head.startswith("HTTP/1.1 403 ")
    assert json.loads(body)["code"] == "unsupported_subprotocol"


async def test_http_still_works_on_a_connection_beside_sockets(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    """Sockets and plain HTTP share the port and the protocol class."""
    async with connect(f"{foyer.ws_url}/ws/guest/{host['slug']}") as ws:
        head, _body = await _handshake(foyer, "/healthz", {})
        assert head.startswith("HTTP/1.1 200 ")
        await ws.send(json.dumps({"type": "knock", "name": "Beside"}))
        assert json.loads(await ws.recv())["type"] == "waiting"
