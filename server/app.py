"""The Starlette application factory: routes, lifespan, error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute

from server import api, openapi, pages
from server.api import ApiError, error_response
from server.config import Settings
from server.endpoints import guest_endpoint, host_endpoint
from server.node import Node

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


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; settings come from ``FOYER_*`` env vars unless given."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    node = Node(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
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
            exc.status_code, str(exc.detail))
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
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error,
                            Exception: on_error},
    )
    app.state.node = node
    return app
