"""The Starlette application factory: routes, lifespan, error handlers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from server import logs
from server.lobby.endpoints import Lobby
from server.lobby.upgrade import Gate
from server.node import Node
from server.ops.config import Settings
from server.ops.process import follow_supervisor
from server.tasks import cancel_and_wait
from server.web import (
    api,
    calendars_api,
    errors,
    meetings_api,
    oauth,
    openapi,
    pages,
    prometheus,
    replies,
    webhooks_api,
)

log = logging.getLogger("foyer.app")


class SigtermDrain:
    """SIGTERM drains before uvicorn shuts down (Kubernetes, systemd and
    ``--workers N`` supervisors all stop a process with it).

    uvicorn's own SIGTERM handling stops listening at once and closes every
    socket abruptly (1012, without the frames queued for it), then waits
    ``timeout_graceful_shutdown`` for the app. So this takes SIGTERM first:
    ``/readyz`` goes 503 and new sockets get HTTP 503 at once, every socket is
    closed with 1012 after its queued frames, and the drain waits for their
    clean-up; then it hands the signal to uvicorn's handler, which shuts down
    as before (what is left is closed by it). A watchdog ends the process at
    ``FOYER_DRAIN_TIMEOUT`` after the signal whatever is still running. A
    second SIGTERM goes straight to uvicorn. Outside uvicorn (no Python
    handler to hand over to) nothing is installed."""

    def __init__(self, node: Node, timeout: float) -> None:
        self.node = node
        self.timeout = timeout
        # The sockets' share; the rest is uvicorn's shutdown and the Node's stop.
        self.sockets_timeout = timeout - min(1.0, timeout / 2)
        self._previous: Callable[[int, FrameType | None], Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._signalled = False
        self._watchdog = threading.Timer(timeout, self._overdue)
        self._watchdog.daemon = True

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        self._previous = previous
        self._loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        assert self._previous is not None and self._loop is not None
        if self._signalled:
            self._previous(sig, frame)  # a second SIGTERM: stop now
            return
        self._signalled = True
        self._watchdog.start()
        self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        assert self._loop is not None
        self._task = self._loop.create_task(self._drain(), name="foyer-drain")

    async def _drain(self) -> None:
        try:
            await self.node.drain(self.sockets_timeout)
        except Exception:
            log.exception("drain failed")
        assert self._previous is not None
        self._previous(signal.SIGTERM, None)  # uvicorn: stop listening, shut down

    def _overdue(self) -> None:
        log.error("still running %.1f s after SIGTERM (FOYER_DRAIN_TIMEOUT): exiting", self.timeout)
        logging.shutdown()
        os._exit(1)

    async def cancel(self) -> None:
        """The lifespan ends (SIGINT, or after the drain): the drain task goes."""
        if self._task is not None:
            await cancel_and_wait([self._task])

    def disarm(self) -> None:
        """The Node stopped in time: no watchdog, and the handler given back."""
        self._watchdog.cancel()
        if self._previous is not None and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)


class FrontDoor:
    """The ASGI app uvicorn runs: every request goes to Starlette, and
    WebSocket upgrades to ``gate`` (``server.ops.http_protocol`` hands them
    over on the parsed request; see ``server.lobby.upgrade``). A WebSocket
    that reaches ASGI anyway (another server) is refused by Starlette: it has
    no WebSocket routes."""

    def __init__(self, app: Starlette, lobby: Lobby) -> None:
        self.app = app
        self.lobby = lobby
        self.gate = Gate(lobby)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def http_routes() -> list[BaseRoute]:
    """Every HTTP route (``tests/server/test_openapi.py`` checks each ``/api/``,
    ``/oauth/`` and ``/.well-known/`` one is in the OpenAPI document)."""
    return [
        *api.routes,
        *webhooks_api.routes,
        *meetings_api.routes,
        *calendars_api.routes,
        *openapi.routes,
        *pages.routes,
        *replies.routes,
        *prometheus.routes,
        *oauth.routes,
    ]


def create_app(settings: Settings | None = None) -> FrontDoor:
    """Build the app; settings come from ``FOYER_*`` env vars unless given."""
    follow_supervisor()  # a worker of --workers N dies with its supervisor
    settings = settings or Settings()
    logs.configure(settings.log_level, settings.log_format)
    node = Node(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()  # its GcPolicy freezes what start-up made
        drain = SigtermDrain(node, settings.drain_timeout)
        drain.install()
        try:
            yield
        finally:
            await drain.cancel()
            await node.stop()
            drain.disarm()

    app = Starlette(
        routes=http_routes(),
        lifespan=lifespan,
        exception_handlers=errors.HANDLERS,
    )
    app.state.web = node.web
    return FrontDoor(app, node.lobby)
