"""The HTTP API (JSON in, JSON out; every error is ``{code, message}``).

Bodies are validated by pydantic models, which also describe the API in
``/openapi.json``. Integrator endpoints need ``Authorization: Bearer
<FOYER_API_KEY>``; ``/api/links/{slug}``, ``/healthz`` and ``/readyz`` are public.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.errors import (
    ApiUnauthorized,
    BadMessage,
    BadRequest,
    InvalidBody,
    RateLimited,
    RetiredLink,
    Unauthorized,
    UnknownHost,
    UnknownLink,
)
from protocol.links import slug_rules
from protocol.lobby import PAGE_GUESTS
from protocol.messages import HOST_FRAMES, HOST_ID_RE, LobbyPage, Page, parse
from server import i18n
from server.access.origins import client_address, origin_allowed
from server.access.tokens import same_secret
from server.hosts.settings import (
    DisplayName,
    EmailAddress,
    SettingsPatch,
    settings_view,
    validation_message,
)
from server.storage.hosts import HostRecord
from server.web.context import web
from server.web.errors import error_response

log = logging.getLogger("foyer.api")


# ---------------------------------------------------------------- request bodies


class HostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=HOST_ID_RE.pattern, description="the host id (JWT sub)")
    name: DisplayName
    email: EmailAddress | None = None


class SlugChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(max_length=200)
    retire_old: bool = Field(
        default=False,
        description="retire the old slug at once (a leaked link): it answers 410 'no longer "
        "in use' instead of leading to the new one",
    )


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    starts_at: int = Field(ge=0, le=2**53, description="ms since the Unix epoch, UTC")
    duration: int = Field(ge=1, le=1440, description="minutes")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600, description="seconds")


class GuestTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailAddress
    name: DisplayName | None = None
    ttl: int = Field(default=3600, ge=60, le=7 * 24 * 3600, description="seconds")


async def _body(request: Request, model: type[BaseModel], *, optional: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip() and optional:
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidBody(validation_message(exc)) from None


def _authorize(request: Request) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key or not same_secret(key.strip(), web(request).api_key):
        raise ApiUnauthorized("missing or wrong API key (Authorization: Bearer)")


# What the other API modules use (server/web/webhooks_api.py, ...).
read_body = _body
require_api_key = _authorize


def authorize_host(request: Request, host: str) -> None:
    """The API key, or this host's own token (``_authorize_host``)."""
    _authorize_host(request, host)


def _base_url(request: Request) -> str:
    public = web(request).public_url
    return (public or str(request.base_url)).rstrip("/")


def _host_view(request: Request, record: HostRecord) -> dict[str, Any]:
    context = web(request)
    return {
        "id": record["id"],
        "name": record["name"],
        "email": record["email"],
        "slug": record["slug"],
        "link": f"{_base_url(request)}/l/{record['slug']}",
        "retired": record["retired"],
        "settings": settings_view(record["settings"]),
        # What this deployment offers (the console's link builder and email setting).
        "email_enabled": context.email_enabled,
        "regions": context.regions,
    }


async def _require_host(request: Request) -> HostRecord:
    host = str(request.path_params["host"])
    if not HOST_ID_RE.match(host):
        raise UnknownHost("no such host")
    return await web(request).hosts.require_host(host)


# --------------------------------------------------------------------- handlers


async def create_host(request: Request) -> Response:
    _authorize(request)
    body = await _body(request, HostCreate)
    record = await web(request).hosts.create_host(body.id, body.name.strip(), body.email)
    return JSONResponse(_host_view(request, record), status_code=201)


async def get_host(request: Request) -> Response:
    _authorize_host(request, str(request.path_params["host"]))
    return JSONResponse(_host_view(request, await _require_host(request)))


async def host_token(request: Request) -> Response:
    _authorize(request)
    record = await _require_host(request)
    body = await _body(request, TokenRequest, optional=True)
    token = web(request).tokens.host_token(record["id"], body.ttl)
    return JSONResponse({"token": token, "expires_at": int((time.time() + body.ttl) * 1000)})


async def change_slug(request: Request) -> Response:
    _authorize_host(request, str(request.path_params["host"]))
    record = await _require_host(request)
    body = await _body(request, SlugChange)
    context = web(request)
    await context.hosts.change_slug(record["id"], body.slug, retire_old=body.retire_old)
    context.directory.forget(record["id"])
    return JSONResponse(_host_view(request, await _require_host(request)))


async def check_slug(request: Request) -> Response:
    """``GET /api/hosts/{host}/slug-check?slug=``: each slug rule, passed or not,
    and whether another host has it: the console names them as the host types."""
    host = str(request.path_params["host"])
    _authorize_host(request, host)
    await _require_host(request)
    raw = request.query_params.get("slug", "")[:200]
    slug = raw.strip().lower()
    rules = slug_rules(raw)
    free = True
    if all(rules.values()):
        owner = await web(request).hosts.host_for_slug(slug)
        free = owner is None or owner == host
    rules["available"] = free
    checks = [{"rule": name, "ok": ok} for name, ok in rules.items()]
    return JSONResponse({"slug": slug, "ok": all(rules.values()), "rules": checks})


async def patch_settings(request: Request) -> Response:
    _authorize_host(request, str(request.path_params["host"]))
    record = await _require_host(request)
    body = await _body(request, SettingsPatch)
    try:
        await web(request).host_settings.update(record["id"], body.model_dump(exclude_unset=True))
    except UnknownLink:
        raise UnknownHost("no such host") from None
    return JSONResponse(_host_view(request, await _require_host(request)))


async def create_session(request: Request) -> Response:
    _authorize(request)
    record = await _require_host(request)
    body = await _body(request, SessionCreate)
    ends_ms = body.starts_at + body.duration * 60_000
    ttl_s = int(max(0, ends_ms - time.time() * 1000) / 1000) + 24 * 3600
    session = {"title": body.title, "starts_at": body.starts_at, "duration": body.duration}
    sid = await web(request).hosts.create_session(record["id"], session, ttl_s)
    link = f"{_base_url(request)}/l/{record['slug']}?s={sid}"
    return JSONResponse({"id": sid, "link": link, **session}, status_code=201)


async def guest_token(request: Request) -> Response:
    _authorize(request)
    body = await _body(request, GuestTokenRequest)
    token = web(request).tokens.guest_token(body.email, body.name, body.ttl)
    return JSONResponse({"token": token}, status_code=201)


# -- the lobby over HTTP (an integrator's backend answers like a device) ----------

REPLY_ACTIONS = ("admit", "merge", "new_meeting", "busy", "deny", "message", "hold")


class GuestReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["admit", "merge", "new_meeting", "busy", "deny", "message", "hold"]
    title: str | None = Field(default=None, description="new_meeting: the meeting's title")
    message: str | None = Field(default=None, description="busy/deny/hold: a line for the guest")
    estimate_s: int | None = Field(
        default=None, ge=0, le=86_400, description="hold: about how long, in seconds"
    )
    text: str | None = Field(default=None, description="message: the line to send")
    block: bool | None = Field(default=None, description="deny: also block the guest's email")


def _authorize_host(request: Request, host: str) -> None:
    """The API key, or the host's own token (a host's backend holds one)."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    context = web(request)
    if scheme.lower() == "bearer" and key and same_secret(key, context.api_key):
        return
    try:
        claims = context.tokens.host(key) if scheme.lower() == "bearer" and key else None
    except Unauthorized:
        claims = None
    if claims is None or claims.host != host:
        raise ApiUnauthorized("needs the API key or this host's token (Authorization: Bearer)")


async def waiting(request: Request) -> Response:
    """``GET /api/hosts/{host}/waiting?after=&limit=``: the lobby, oldest first, paged."""
    host = str(request.path_params["host"])
    _authorize_host(request, host)
    record = await _require_host(request)
    after = request.query_params.get("after") or None
    raw_limit = request.query_params.get("limit") or str(PAGE_GUESTS)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= PAGE_GUESTS:
        raise InvalidBody(f"limit: a whole number from 1 to {PAGE_GUESTS}")
    answer = await web(request).room.handle_host(
        record["id"], Page(after=after, limit=int(raw_limit))
    )
    assert isinstance(answer, LobbyPage)
    return JSONResponse({"guests": answer.guests, "more": answer.more})


async def reply_to_guest(request: Request) -> Response:
    """``POST /api/hosts/{host}/guests/{guest}/reply``: the same replies as a
    device's, through the same script: the first reply wins, everywhere."""
    host = str(request.path_params["host"])
    _authorize_host(request, host)
    record = await _require_host(request)
    body = await _body(request, GuestReply)
    fields = {k: v for k, v in body.model_dump(exclude_none=True).items() if k != "action"}
    try:
        message = parse(
            {"type": body.action, "guest": request.path_params["guest"], **fields}, HOST_FRAMES
        )
    except BadMessage as exc:
        raise InvalidBody(exc.message) from None
    await web(request).room.handle_host(record["id"], message, "api")
    return JSONResponse({"status": "ok", "action": body.action})


async def link_info(request: Request) -> Response:
    context = web(request)
    if context.link_info_limit:
        address = client_address(request.scope, context.trusted_proxies)
        if await context.store.hit(f"links:{address}") > context.link_info_limit:
            raise RateLimited("too many link lookups from this address; try again in a minute")
    slug = str(request.path_params["slug"])
    cors = {"Access-Control-Allow-Origin": "*"}
    try:
        host = await context.directory.host_for_slug(slug)
        record = await context.hosts.get_host(host)  # fresh: names and slugs change
        if record is None:
            raise UnknownLink()
        if slug.lower() in record["retired"]:
            raise RetiredLink()
    except UnknownLink as exc:  # the widget on another site must read why, too
        status, code = (
            (410, "retired_link") if isinstance(exc, RetiredLink) else (404, "unknown_link")
        )
        answer = error_response(status, code, str(exc))
        answer.headers.update(cors)
        return answer
    # Public, read-only: any site embedding the widget may read it. Whether the
    # asking page's origin may open the guest socket: the widget says "not
    # available on this site" instead of retrying a refused handshake forever.
    (online, state) = (await context.store.host_statuses([record["id"]]))[record["id"]]
    return JSONResponse(
        {
            "slug": record["slug"],
            "host_name": record["name"],
            "host_online": online,
            "host_state": state,  # addition: available, in_meeting or away
            "embed_allowed": origin_allowed(request.headers, context.allowed_origins),
        },
        headers=cors,
    )


async def catalogue(request: Request) -> Response:
    """``GET /api/i18n?lang=``: the strings of the visitor's language (``lang``,
    else ``Accept-Language``, else English), for the widget on another site."""
    lang = i18n.choose(request.query_params.get("lang"), request.headers.get("accept-language"))
    return JSONResponse(
        {"lang": lang, "messages": i18n.messages(lang)},
        headers={"Access-Control-Allow-Origin": "*", "Vary": "Accept-Language"},
    )


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. Nothing else is checked, on purpose: a
    restart cannot bring Redis back (``/readyz`` says whether to send traffic)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: Redis answers, the pub/sub readers work, and the process is
    not draining (SIGTERM). 503 ``unavailable`` with the reason otherwise."""
    reason = await web(request).unready()
    if reason is None:
        return JSONResponse({"status": "ready"})
    return error_response(503, "unavailable", reason)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/api/hosts", create_host, methods=["POST"]),
    Route("/api/hosts/{host}", get_host, methods=["GET"]),
    Route("/api/hosts/{host}/token", host_token, methods=["POST"]),
    Route("/api/hosts/{host}/slug", change_slug, methods=["PUT"]),
    Route("/api/hosts/{host}/slug-check", check_slug, methods=["GET"]),
    Route("/api/hosts/{host}/settings", patch_settings, methods=["PATCH"]),
    Route("/api/hosts/{host}/sessions", create_session, methods=["POST"]),
    Route("/api/hosts/{host}/waiting", waiting, methods=["GET"]),
    Route("/api/hosts/{host}/guests/{guest}/reply", reply_to_guest, methods=["POST"]),
    Route("/api/guest-tokens", guest_token, methods=["POST"]),
    Route("/api/links/{slug}", link_info, methods=["GET"]),
    Route("/api/i18n", catalogue, methods=["GET"]),
]
