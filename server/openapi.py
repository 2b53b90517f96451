"""The OpenAPI 3 document of the HTTP API, and a page to read it."""

from __future__ import annotations

from starlette.routing import Route

routes: list[Route] = []
