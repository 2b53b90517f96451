"""uvicorn's HTTP/1.1 protocol (h11, the one ``foyer serve`` runs) with a
header timeout, which uvicorn lacks, and WebSocket upgrades handed to the
app's own gate instead of uvicorn's ASGI WebSocket protocol.

The gate (``server.lobby.upgrade.Gate``) answers the handshake on the request
h11 already parsed and serves the socket on its transport: no ASGI scope,
queue or task per socket beyond the endpoint's own (issue 11: a waiting guest
went from 25 KiB to about half of that). An app without a gate (any other
ASGI app) gets uvicorn's upgrade as before.

Without it a connection that never finishes its request line and headers is
kept forever: a few hundred of them, from one client, use up the process's
file descriptors (nginx's ``client_header_timeout``). The timer starts when
the connection is made, and again when a kept-alive connection starts its next
request; it stops once the request's headers are in (a WebSocket upgrade
included). When it fires the connection is closed without an answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableSet
from typing import Any, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.lobby.upgrade import UpgradeRequest

log = logging.getLogger("foyer.http")

DEFAULT_HEADER_TIMEOUT = 10.0


class WebSocketGate(Protocol):
    def upgrade(
        self,
        transport: asyncio.Transport,
        request: UpgradeRequest,
        trailing: bytes = b"",
        registry: MutableSet[Any] | None = None,
    ) -> None:
        """Answer the handshake and serve the socket on ``transport``."""


def gate_of(app: Any) -> WebSocketGate | None:
    """The app's gate, looking through uvicorn's wrappers (``.app``)."""
    for _ in range(4):
        gate = getattr(app, "gate", None)
        if gate is not None:
            return gate  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class HeaderTimeoutProtocol(H11Protocol):
    """``H11Protocol`` plus a deadline for each request's headers. uvicorn takes
    the class through its ``http=`` option; ``foyer serve`` passes it with the
    timeout bound by ``functools.partial`` (picklable, so spawned workers get
    it too)."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        first_deadline: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        # The loop time by which the first request's headers are due, when the
        # connection began under another protocol (``FrontProtocol``).
        self._first_deadline = first_deadline

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        gate = gate_of(self.app)
        if gate is None:
            super().handle_websocket_upgrade(event)
            return
        self.connections.discard(self)
        self._stop_header_timer()
        trailing, _closed = self.conn.trailing_data
        request = UpgradeRequest(event.target, self.headers, self.client)
        gate.upgrade(self.transport, request, bytes(trailing), self.connections)

    def _watch_headers(self) -> None:
        """Run the timer while the peer owes us a request's headers: h11 says
        ``IDLE`` until a whole request line and header block are parsed."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if not waiting:
            self._stop_header_timer()
        elif self._header_timer is None:
            deadline = self._first_deadline
            if deadline is None:
                deadline = self.loop.time() + self.header_timeout
            self._header_timer = self.loop.call_at(deadline, self._headers_late)
        self._first_deadline = None

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("closing a connection whose request headers did not arrive in time")
            self.transport.close()
