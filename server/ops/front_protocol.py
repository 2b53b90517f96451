"""The protocol ``foyer serve`` runs on each accepted connection: a WebSocket
upgrade to the lobby goes straight to the app's gate from a light parse of
its request head; anything else is handed, bytes and all, to uvicorn's h11
protocol (``HeaderTimeoutProtocol``) and Starlette.

Why (issue 11): a guest's visit is one upgrade on a new connection, and the
h11 state machine, uvicorn's per-connection setup and its ASGI scope cost
about a tenth of the guest process's CPU per visit while the gate needs only
the target and the headers. The fast path takes only a head it can read
without doubt (``GET``, ``HTTP/1.1``, well-formed fields, a ``Host``, no body,
``Connection: upgrade`` and ``Upgrade: websocket``); for any other head it
steps aside and h11 answers exactly as it did before, errors included. The
header deadline runs from the connection's start whichever path serves it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, cast

from server.lobby.upgrade import UpgradeRequest
from server.ops.http_protocol import (
    DEFAULT_HEADER_TIMEOUT,
    HeaderTimeoutProtocol,
    WebSocketGate,
    gate_of,
)
from server.tasks import running_loop

log = logging.getLogger("foyer.http")

LOBBY_PREFIX = b"GET /ws/"
MAX_HEAD = 16 * 1024  # h11's default limit on an incomplete request head
_FIELD = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*"  # a token, then optional whitespace
    rb"((?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?)[ \t]*"
)
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_NO_FAST_PATH = frozenset((b"content-length", b"transfer-encoding"))


def parse_upgrade(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """The target and the headers (names lower-cased, as h11 gives them) of a
    lobby upgrade head without its final blank line, or ``None`` when the
    head is anything else or anything doubtful (h11 then decides)."""
    lines = head.split(b"\r\n")
    request = lines[0].split(b" ")
    if len(request) != 3 or request[0] != b"GET" or request[2] != b"HTTP/1.1":
        return None
    target = request[1]
    if _TARGET.fullmatch(target) is None:
        return None
    headers: list[tuple[bytes, bytes]] = []
    connection: list[bytes] = []
    upgrade = hosts = 0
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:  # obs-fold, bare LF, a control byte, no colon ...
            return None
        name = field.group(1).lower()
        value = field.group(2)
        if name in _NO_FAST_PATH:
            return None
        if name == b"connection":  # uvicorn's rule: the last one counts
            connection = [token.strip().lower() for token in value.split(b",")]
        elif name == b"upgrade":
            upgrade = 1 if value.lower() == b"websocket" else -1
        elif name == b"host":
            hosts += 1
        headers.append((name, value))
    if hosts != 1 or upgrade != 1 or b"upgrade" not in connection:
        return None
    return target, headers


class FrontProtocol(asyncio.Protocol):
    """Reads a connection's first request head: a lobby upgrade goes to the
    gate, the rest to ``HeaderTimeoutProtocol``. uvicorn takes the class
    through its ``http=`` option, like the protocol it fronts."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        if not config.loaded:
            config.load()
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop or running_loop()
        self._header_timeout = header_timeout
        self._gate: WebSocketGate | None = gate_of(config.loaded_app)
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._handed = False  # the gate has the transport now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._deadline = self._loop.time() + self._header_timeout
        if self._gate is None:  # not Foyer's app: nothing to take
            self._to_http()
            return
        self._server_state.connections.add(self)
        self._timer = self._loop.call_at(self._deadline, self._headers_late)

    def data_received(self, data: bytes) -> None:
        if self._handed:
            return  # a refused upgrade's transport is closing: nothing more is read
        buffer = self._buffer + data if self._buffer else data
        if not buffer.startswith(LOBBY_PREFIX[: len(buffer)]):
            self._to_http(buffer)
            return
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                self._to_http(buffer)
            else:
                self._buffer = buffer
            return
        parsed = parse_upgrade(buffer[:end])
        if parsed is None:
            self._to_http(buffer)
            return
        self._upgrade(*parsed, buffer[end + 4 :])

    def _upgrade(self, target: bytes, headers: list[tuple[bytes, bytes]], trailing: bytes) -> None:
        transport, gate = self._transport, self._gate
        assert transport is not None and gate is not None
        self._forget()
        self._handed = True
        request = UpgradeRequest(target, headers, _peer(transport))
        gate.upgrade(transport, request, trailing, self._server_state.connections)

    def _to_http(self, buffer: bytes = b"") -> None:
        """Hand the connection to uvicorn's h11 protocol, with what was read
        so far and what is left of the header deadline."""
        transport = self._transport
        assert transport is not None
        self._forget()
        inner = HeaderTimeoutProtocol(
            config=self._config,
            server_state=self._server_state,
            app_state=self._app_state,
            _loop=self._loop,
            header_timeout=self._header_timeout,
            first_deadline=self._deadline,
        )
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if buffer and not transport.is_closing():
            inner.data_received(buffer)

    def _forget(self) -> None:
        self._buffer = b""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server_state.connections.discard(self)

    def _headers_late(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            log.debug("closing a connection whose request headers did not arrive in time")
            self._transport.close()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself: no request will follow

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def shutdown(self) -> None:
        """The server stops (uvicorn's call): no request has begun here."""
        if self._transport is not None:
            self._transport.close()


def _peer(transport: asyncio.Transport) -> tuple[str, int] | None:
    info = transport.get_extra_info("peername")
    if isinstance(info, list | tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None
