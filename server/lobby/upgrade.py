"""The WebSocket handshake of the lobby's two paths, on the request the HTTP
protocol already parsed (h11): route, check, answer ``101`` or refuse with an
HTTP status and a JSON body, then hand the transport to a ``Connection`` and
start its endpoint.

Doing it here rather than through ASGI keeps a socket's cost to what it needs
(issue 11): no ASGI scope, receive queue or events per socket, no second
parse of the request by websockets' HTTP reader. The checks are the ones of
RFC 6455 section 4.2.1 that a browser or library can get wrong (version, key),
and Foyer's own (route, drain, origin, subprotocol); the ``Upgrade`` and
``Connection`` headers were checked by the HTTP protocol before it called us.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import MutableSet, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from websockets.utils import accept_key

from protocol.codec import CODECS, negotiate
from server.access.origins import address_of, origin_allowed
from server.lobby.connection import Connection
from server.lobby.endpoints import Lobby, guest_endpoint, host_endpoint

log = logging.getLogger("foyer.upgrade")

HOST_PATH = "/ws/host"
GUEST_PREFIX = "/ws/guest/"
Headers = Sequence[tuple[bytes, bytes]]  # h11's: names lower-cased


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """What the handshake needs of the HTTP request."""

    target: bytes  # the request target, path and query, as sent
    headers: Headers
    client: tuple[str, int] | None  # the peer's address (the transport's)

    def header(self, name: bytes) -> str | None:
        """One header's value; repeated fields joined with ", " (RFC 9110)."""
        values = [value for key, value in self.headers if key == name]
        return b", ".join(values).decode("latin-1") if values else None


class Refused(Exception):
    """The handshake is answered with an HTTP error instead of ``101``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


_PHRASES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    426: "Upgrade Required",
    503: "Service Unavailable",
}


def refusal(exc: Refused) -> bytes:
    """The whole HTTP answer to a refused handshake."""
    body = json.dumps({"code": exc.code, "message": exc.message}).encode()
    lines = [
        f"HTTP/1.1 {exc.status} {_PHRASES.get(exc.status, 'Error')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in exc.headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _route(path: str) -> tuple[str, str]:
    """("host", "") or ("guest", slug), else ``Refused`` 404."""
    if path == HOST_PATH:
        return "host", ""
    slug = path[len(GUEST_PREFIX) :] if path.startswith(GUEST_PREFIX) else ""
    if slug and "/" not in slug:
        return "guest", slug
    raise Refused(404, "not_found", "no WebSocket endpoint at this path")


def switching(request: UpgradeRequest, subprotocol: str | None) -> bytes:
    """The ``101`` answer to a valid handshake (``Refused`` for a bad one)."""
    if request.header(b"sec-websocket-version") != "13":
        raise Refused(
            426,
            "bad_request",
            "only WebSocket version 13 is spoken",
            {"sec-websocket-version": "13"},
        )
    key = request.header(b"sec-websocket-key") or ""
    try:
        valid = len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        valid = False
    if not valid:
        raise Refused(400, "bad_request", "missing or malformed Sec-WebSocket-Key")
    head = [
        "HTTP/1.1 101 Switching Protocols",
        "upgrade: websocket",
        "connection: Upgrade",
        f"sec-websocket-accept: {accept_key(key)}",
    ]
    if subprotocol is not None:
        head.append(f"sec-websocket-protocol: {subprotocol}")
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def take_over(
    transport: asyncio.Transport,
    conn: Connection,
    answer: bytes,
    registry: MutableSet[Any] | None,
) -> None:
    """Send the ``101`` and hand the transport to ``conn``."""
    transport.write(answer)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    if registry is not None:
        conn.track(registry)


class Gate:
    """Opens lobby sockets for one process: the HTTP protocol calls
    ``upgrade`` with a parsed upgrade request and the transport."""

    def __init__(self, lobby: Lobby) -> None:
        self.lobby = lobby

    def upgrade(
        self,
        transport: asyncio.Transport,
        request: UpgradeRequest,
        trailing: bytes = b"",
        registry: MutableSet[Any] | None = None,
    ) -> None:
        try:
            self._open(transport, request, trailing, registry)
        except Refused as exc:
            transport.write(refusal(exc))
            transport.close()

    def _open(
        self,
        transport: asyncio.Transport,
        request: UpgradeRequest,
        trailing: bytes,
        registry: MutableSet[Any] | None,
    ) -> None:
        lobby = self.lobby
        config = lobby.config
        raw_path, _, raw_query = request.target.partition(b"?")
        kind, slug = _route(unquote(raw_path.decode("latin-1")))
        if lobby.sockets.draining:
            raise Refused(
                503, "unavailable", "this server is restarting; connect again", {"retry-after": "1"}
            )
        seen = {"origin": request.header(b"origin"), "host": request.header(b"host")}
        if not origin_allowed({k: v for k, v in seen.items() if v is not None}, config.origins):
            raise Refused(403, "forbidden", "this origin may not open a socket here")
        offered_header = request.header(b"sec-websocket-protocol")
        offered = [p.strip() for p in offered_header.split(",")] if offered_header else []
        chosen = negotiate(offered)
        if chosen is None:
            raise Refused(403, "unsupported_subprotocol", "no offered subprotocol is spoken here")
        answer = switching(request, chosen if offered else None)
        conn = Connection(CODECS[chosen], config.limits, lobby.metrics)
        take_over(transport, conn, answer, registry)
        if kind == "host":
            endpoint = host_endpoint(conn, lobby)
        else:
            address = address_of(request.client, request.headers, config.trusted_proxies)
            query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True))
            endpoint = guest_endpoint(conn, lobby, slug, address, query)
        lobby.sockets.run(conn, endpoint)
        if trailing:
            conn.data_received(trailing)
