"""The Starlette application factory: routes, lifespan, error handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from server.lobby.endpoints import guest_endpoint, host_endpoint
from server.node import Node
from server.ops.config import Settings
from server.web import api, openapi, pages
from server.web.api import ApiError, error_response

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


GUEST_PREFIX = "/ws/guest/"


class Foyer:
    """The ASGI entry: WebSockets go straight to their endpoint; all else to
    Starlette. A socket lives for minutes to hours, and Starlette's middleware
    and router frames would stay alive with it (about 4.5 KiB per idle guest,
    measured with the load-test harness's ``--idle`` mode)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            if path == "/ws/host":
                scope["app"] = self.app
                await host_endpoint(WebSocket(scope, receive, send))
                return
            slug = path[len(GUEST_PREFIX) :] if path.startswith(GUEST_PREFIX) else ""
            if slug and "/" not in slug:
                scope["app"] = self.app
                scope["path_params"] = {"slug": slug}
                await guest_endpoint(WebSocket(scope, receive, send))
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> Foyer:
    """Build the app; settings come from ``FOYER_*`` env vars unless given."""
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

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        message = {404: "no such resource", 405: "method not allowed"}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(exc.status_code, code, message)

    async def on_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error")

    app = Starlette(
        routes=[
            WebSocketRoute("/ws/host", host_endpoint),
            WebSocketRoute("/ws/guest/{slug}", guest_endpoint),
            *api.routes,
            *openapi.routes,
            *pages.routes,
        ],
        lifespan=lifespan,
        exception_handlers={
            ApiError: on_api_error,
            HTTPException: on_http_error,
            Exception: on_error,
        },
    )
    app.state.node = node
    return Foyer(app)
