"""The Starlette application factory: routes, lifespan, error handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from server.lobby.endpoints import Lobby, guest_endpoint, host_endpoint
from server.node import Node
from server.ops.config import Settings
from server.ops.process import follow_supervisor
from server.web import api, errors, openapi, pages

log = logging.getLogger("foyer.app")


def _configure_logging(level: str) -> None:
    """Foyer's own loggers (``foyer.*``) print like uvicorn's, at its level."""
    logger = logging.getLogger("foyer")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


HOST_PATH = "/ws/host"
GUEST_PREFIX = "/ws/guest/"


class FrontDoor:
    """The ASGI entry: the two WebSocket paths go straight to their endpoint,
    everything else to Starlette. A socket lives for minutes to hours, and
    Starlette's middleware and router frames would stay alive with it (about
    4.5 KiB per idle guest, measured with the load-test harness's ``--idle``
    mode). Any other WebSocket path reaches Starlette, which refuses it."""

    def __init__(self, app: Starlette, lobby: Lobby) -> None:
        self.app = app
        self.lobby = lobby

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            if path == HOST_PATH:
                await host_endpoint(WebSocket(scope, receive, send), self.lobby)
                return
            slug = path[len(GUEST_PREFIX) :] if path.startswith(GUEST_PREFIX) else ""
            if slug and "/" not in slug:
                await guest_endpoint(WebSocket(scope, receive, send), self.lobby, slug)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FrontDoor:
    """Build the app; settings come from ``FOYER_*`` env vars unless given."""
    follow_supervisor()  # a worker of --workers N dies with its supervisor
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    node = Node(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        # Start-up objects (modules, app, scripts) never die: keep them out of
        # every full collection, which otherwise stalled the loop ~50 ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await node.stop()

    app = Starlette(
        routes=[*api.routes, *openapi.routes, *pages.routes],
        lifespan=lifespan,
        exception_handlers=errors.HANDLERS,
    )
    app.state.web = node.web
    return FrontDoor(app, node.lobby)
