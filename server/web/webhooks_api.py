"""``/api/webhooks``: the endpoints an integrator registers, each with its own
secret and filters, what each was sent, and delivering one event again.

The deployment's own endpoint (``FOYER_WEBHOOK_URL``) is listed too, as
``deployment``: it can be re-enabled after a 410 and its deliveries read and
redelivered, but it is changed through its settings, not here.
Every call needs the API key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.errors import InvalidBody, RefusedWebhookTarget, UnknownWebhook
from protocol.events import Hook
from protocol.messages import HOST_ID_RE
from server.access.targets import RefusedTarget
from server.notify.webhooks import check_secret
from server.storage.webhooks import DEPLOYMENT, Endpoint
from server.web.api import read_body, require_api_key
from server.web.context import web

MAX_OVERLAP_S = 7 * 24 * 3600
EVENT_TYPES = tuple(h.value for h in Hook)


def _secret(value: str | None) -> str | None:
    if value is not None:
        try:
            check_secret(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    return value


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, description="http(s) URL to POST to")
    events: list[str] = Field(
        default_factory=list, max_length=32, description="event types wanted; empty: all"
    )
    hosts: list[str] = Field(
        default_factory=list, max_length=1000, description="host ids wanted; empty: all"
    )
    description: str = Field(default="", max_length=200)
    secret: str | None = Field(
        default=None, max_length=200, description="whsec_<base64>; omitted: Foyer makes one"
    )

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}")
        return value

    @field_validator("hosts")
    @classmethod
    def _host_ids(cls, value: list[str]) -> list[str]:
        for host in value:
            if not HOST_ID_RE.match(host):
                raise ValueError(f"{host!r} is not a host id")
        return value

    _check_secret = field_validator("secret")(_secret)


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str | None = Field(
        default=None, max_length=200, description="the new whsec_ secret; omitted: Foyer makes one"
    )
    overlap: int = Field(
        default=24 * 3600,
        ge=0,
        le=MAX_OVERLAP_S,
        description="seconds the old secret keeps signing beside the new one",
    )

    _check_secret = field_validator("secret")(_secret)


def endpoint_view(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as the API shows it: never its secrets (only on create and rotate)."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "hosts": list(endpoint.hosts),
        "description": endpoint.description,
        "created_at": endpoint.created_ms,
        "enabled": not endpoint.disabled,
        "disabled_reason": endpoint.disabled or None,
        "deployment": endpoint.id == DEPLOYMENT,
        "secrets_signing": len(endpoint.secrets),
    }


async def _endpoint(request: Request) -> Endpoint:
    endpoint_id = str(request.path_params["endpoint"])
    found = await web(request).webhooks.endpoint(endpoint_id)
    if found is None:
        raise UnknownWebhook("no webhook endpoint has this id")
    return found


def _registered(endpoint: Endpoint, what: str) -> None:
    if endpoint.id == DEPLOYMENT:
        raise InvalidBody(f"the deployment endpoint is set by FOYER_WEBHOOK_URL; {what}")


async def create(request: Request) -> Response:
    """``POST /api/webhooks``: register an endpoint; the answer holds its secret."""
    require_api_key(request)
    body: WebhookCreate = await read_body(request, WebhookCreate)
    try:
        endpoint = await web(request).webhooks.register(
            body.url,
            events=tuple(dict.fromkeys(body.events)),
            hosts=tuple(dict.fromkeys(body.hosts)),
            description=body.description,
            secret=body.secret,
        )
    except RefusedTarget as exc:
        raise RefusedWebhookTarget(f"url: {exc}") from None
    view = {**endpoint_view(endpoint), "secret": endpoint.secrets[0].value}
    return JSONResponse(view, status_code=201)


async def list_all(request: Request) -> Response:
    require_api_key(request)
    found = await web(request).webhooks.endpoints()
    return JSONResponse({"webhooks": [endpoint_view(e) for e in found]})


async def get_one(request: Request) -> Response:
    require_api_key(request)
    return JSONResponse(endpoint_view(await _endpoint(request)))


async def delete(request: Request) -> Response:
    """``DELETE /api/webhooks/{id}``: nothing more is sent to it; what it was
    still owed is dropped at the next pass."""
    require_api_key(request)
    endpoint = await _endpoint(request)
    _registered(endpoint, "unset it there")
    await web(request).webhooks.remove(endpoint.id)
    return Response(status_code=204)


async def rotate(request: Request) -> Response:
    """``POST /api/webhooks/{id}/rotate``: a new secret signs from now on; the
    old one signs too until ``overlap`` seconds have passed."""
    require_api_key(request)
    endpoint = await _endpoint(request)
    _registered(endpoint, "rotate by listing two secrets in FOYER_WEBHOOK_SECRET")
    body: SecretRotation = await read_body(request, SecretRotation, optional=True)
    try:
        rotated = await web(request).webhooks.rotate(endpoint.id, body.secret, body.overlap)
    except KeyError:
        raise UnknownWebhook("no webhook endpoint has this id") from None
    old = [s.until_ms for s in rotated.secrets[1:]]
    view = {
        **endpoint_view(rotated),
        "secret": rotated.secrets[0].value,
        "previous_signs_until": max(old) if old else None,
    }
    return JSONResponse(view)


async def enable(request: Request) -> Response:
    """``POST /api/webhooks/{id}/enable``: on again after it answered 410."""
    require_api_key(request)
    endpoint = await _endpoint(request)
    try:
        enabled = await web(request).webhooks.enable(endpoint.id)
    except KeyError:
        raise UnknownWebhook("no webhook endpoint has this id") from None
    return JSONResponse(endpoint_view(enabled))


async def deliveries(request: Request) -> Response:
    """``GET /api/webhooks/{id}/deliveries``: its latest attempts, and the
    deliveries that ran out of retries (with their events)."""
    require_api_key(request)
    endpoint = await _endpoint(request)
    raw_limit = request.query_params.get("limit") or "100"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
        raise InvalidBody("limit: a whole number from 1 to 500")
    registry = web(request).webhooks.registry
    attempts = await registry.attempts(endpoint.id, int(raw_limit))
    dead = await registry.dead_letters(endpoint.id, int(raw_limit))
    shown = [{k: v for k, v in a.items() if k != "event"} for a in attempts]
    return JSONResponse({"attempts": shown, "dead": dead})


async def redeliver(request: Request) -> Response:
    """``POST /api/webhooks/{id}/deliveries/{message}/redeliver``: send one
    event again, with its webhook-id (receivers de-duplicate on it)."""
    require_api_key(request)
    endpoint = await _endpoint(request)
    message_id = str(request.path_params["message"])
    if not await web(request).webhooks.redeliver(endpoint.id, message_id):
        raise UnknownWebhook("no delivery with this id in the endpoint's log or dead letters")
    return JSONResponse({"status": "queued", "id": message_id}, status_code=202)


routes = [
    Route("/api/webhooks", create, methods=["POST"]),
    Route("/api/webhooks", list_all, methods=["GET"]),
    Route("/api/webhooks/{endpoint}", get_one, methods=["GET"]),
    Route("/api/webhooks/{endpoint}", delete, methods=["DELETE"]),
    Route("/api/webhooks/{endpoint}/rotate", rotate, methods=["POST"]),
    Route("/api/webhooks/{endpoint}/enable", enable, methods=["POST"]),
    Route("/api/webhooks/{endpoint}/deliveries", deliveries, methods=["GET"]),
    Route("/api/webhooks/{endpoint}/deliveries/{message}/redeliver", redeliver, methods=["POST"]),
]
