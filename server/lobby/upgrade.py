"""The WebSocket handshake of the lobby's two paths: the HTTP protocol hands
over the connection (its transport and the request's raw bytes), picows
parses and answers the handshake, and ``Gate.listener`` decides it: route,
drain, version and key, origin, subprotocol. A refusal is an HTTP status with
a JSON body; an accepted socket gets a ``Connection`` and its endpoint task.

Skipping ASGI keeps a socket's cost to what it needs (issue 11): no ASGI
scope, receive queue or events per socket, no second parse of the request in
Python (picows parses it in C).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable, MutableSet
from typing import Any
from urllib.parse import parse_qsl, unquote

from picows import WSAutoPingStrategy, WSUpgradeRequest, WSUpgradeResponse
from picows import WSUpgradeResponseWithListener as Accepted
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in its stubs

from protocol.codec import CODECS, negotiate
from server.access.origins import address_from, origin_allowed
from server.lobby.connection import Connection, SocketLimits
from server.lobby.endpoints import Lobby, guest_endpoint, host_endpoint

log = logging.getLogger("foyer.upgrade")

HOST_PATH = "/ws/host"
GUEST_PREFIX = "/ws/guest/"
READ_BUFFER = 2048  # picows's initial read buffer per socket (its default is 16 KiB)


class _PeerErrors(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows's log: it makes a child logger per socket of a ``Logger`` it is
    given (an adapter is not one), and it logs a peer's protocol error (a frame
    over the limit) as an error of ours: here that is information."""

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.info(msg, *args, **kwargs)


_PICOWS_LOG = _PeerErrors(logging.getLogger("foyer.websocket"), {})


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

    def response(self) -> Any:
        body = json.dumps({"code": self.code, "message": self.message}).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        return WSUpgradeResponse.create_error_response(self.status, body, headers)


def _route(path: str) -> tuple[str, str]:
    """("host", "") or ("guest", slug), else ``Refused`` 404."""
    if path == HOST_PATH:
        return "host", ""
    slug = path[len(GUEST_PREFIX) :] if path.startswith(GUEST_PREFIX) else ""
    if slug and "/" not in slug:
        return "guest", slug
    raise Refused(404, "not_found", "no WebSocket endpoint at this path")


def _tokens(values: list[str]) -> set[str]:
    """The comma-separated tokens of a header's values, lower-cased."""
    return {token.strip().lower() for value in values for token in value.split(",")}


def check_handshake(request: WSUpgradeRequest) -> None:
    """RFC 6455 4.2.1 as a clear refusal (picows would answer in plain text)."""
    headers = request.headers
    if request.method != b"GET":
        raise Refused(400, "bad_request", "a WebSocket handshake is a GET")
    if "websocket" not in _tokens(headers.getall("upgrade", [])):
        raise Refused(400, "bad_request", "missing Upgrade: websocket")
    if "upgrade" not in _tokens(headers.getall("connection", [])):
        raise Refused(400, "bad_request", "missing Connection: upgrade")
    # picows then checks both values for equality, not for the token: Firefox
    # sends "Connection: keep-alive, Upgrade". The tokens are there: say so.
    headers["Upgrade"] = "websocket"
    headers["Connection"] = "upgrade"
    if headers.get("sec-websocket-version") != "13":
        raise Refused(
            426,
            "bad_request",
            "only WebSocket version 13 is spoken",
            {"Sec-WebSocket-Version": "13"},
        )
    key = headers.get("sec-websocket-key", "")
    try:
        valid = len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        valid = False
    if not valid:
        raise Refused(400, "bad_request", "missing or malformed Sec-WebSocket-Key")


def switching(subprotocol: str | None) -> Any:
    """The ``101`` answer (picows adds the accept key)."""
    extra = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
    return WSUpgradeResponse.create_101_response(extra)


def serve_on(
    transport: asyncio.Transport,
    raw: bytes,
    listener: Callable[[WSUpgradeRequest], Any],
    limits: SocketLimits,
    handshake_timeout: float = 10.0,
) -> None:
    """Hand ``transport`` to picows, and feed it the request bytes read so far
    (the request line and headers, maybe more); ``listener`` decides."""
    protocol = WSProtocol(
        None,  # host and port: a client's
        None,  # path: a client's
        False,  # server side
        listener,
        _PICOWS_LOG,
        True,  # disconnect when a listener callback raises
        handshake_timeout,
        False,  # no auto ping: Connection keeps its own keep-alive timer
        limits.ping_interval,
        limits.ping_timeout,
        WSAutoPingStrategy.PING_WHEN_IDLE,
        True,  # auto pong
        limits.max_size,
        None,  # extra headers
        READ_BUFFER,
    )
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    view = memoryview(raw)
    while view:  # the buffer picows offers may be smaller than the request
        buffer = protocol.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


class Gate:
    """Opens lobby sockets for one process: the HTTP protocol calls ``adopt``
    with the connection's transport and the raw request."""

    def __init__(self, lobby: Lobby, handshake_timeout: float = 10.0) -> None:
        self.lobby = lobby
        self.handshake_timeout = handshake_timeout

    def adopt(
        self, transport: asyncio.Transport, raw: bytes, registry: MutableSet[Any] | None = None
    ) -> None:
        peer = transport.get_extra_info("peername")

        def listener(request: WSUpgradeRequest) -> Any:
            try:
                return self._open(request, peer, registry)
            except Refused as exc:
                return Accepted(exc.response(), None)

        serve_on(transport, raw, listener, self.lobby.config.limits, self.handshake_timeout)

    def _open(self, request: WSUpgradeRequest, peer: Any, registry: MutableSet[Any] | None) -> Any:
        lobby = self.lobby
        config = lobby.config
        raw_path, _, raw_query = request.path.partition(b"?")
        kind, slug = _route(unquote(raw_path.decode("latin-1")))
        if lobby.sockets.draining:
            raise Refused(
                503, "unavailable", "this server is restarting; connect again", {"Retry-After": "1"}
            )
        check_handshake(request)
        headers = request.headers
        seen = {"origin": headers.get("origin"), "host": headers.get("host")}
        if not origin_allowed({k: v for k, v in seen.items() if v is not None}, config.origins):
            raise Refused(403, "forbidden", "this origin may not open a socket here")
        offered = [
            p.strip() for v in headers.getall("sec-websocket-protocol", []) for p in v.split(",")
        ]
        chosen = negotiate([p for p in offered if p])
        if chosen is None:
            raise Refused(403, "unsupported_subprotocol", "no offered subprotocol is spoken here")
        conn = Connection(CODECS[chosen], config.limits, lobby.metrics, registry)
        if kind == "host":
            endpoint = host_endpoint(conn, lobby)
        else:
            forwarded = headers.getall("x-forwarded-for", [])
            address = address_from(peer, forwarded, config.trusted_proxies)
            query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True))
            endpoint = guest_endpoint(conn, lobby, slug, address, query)
        lobby.sockets.run(conn, endpoint)
        return Accepted(switching(chosen if offered else None), conn)
