"""``GET /metrics``: Prometheus's text format (``docs/operations-metrics.md``).

Public unless ``FOYER_METRICS_TOKEN`` is set; then a scrape needs
``Authorization: Bearer <token>``. With ``FOYER_METRICS=false`` it is 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.access.tokens import same_secret
from server.web.context import web
from server.web.errors import error_response


async def metrics(request: Request) -> Response:
    context = web(request)
    if not context.metrics.enabled:
        return error_response(404, "not_found", "metrics are off (FOYER_METRICS=false)")
    token = context.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given or not same_secret(given.strip(), token):
            refused = error_response(401, "unauthorized", "missing or wrong metrics token")
            refused.headers["WWW-Authenticate"] = "Bearer"
            return refused
    body, content_type = context.metrics.exposition()
    return Response(body, media_type=content_type)


routes = [Route("/metrics", metrics, methods=["GET"])]
