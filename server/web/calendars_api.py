"""``/api/hosts/{host}/calendars``: the host's CalDAV calendars that Foyer keeps
in step (docs/meetings.md, Calendar sync). The API key or the host's own
token. Credentials go in and never come out (nor into a log)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.errors import UnknownCalendar, UnknownHost
from protocol.messages import HOST_ID_RE
from server.storage.calendars import Connection
from server.web.api import authorize_host, read_body
from server.web.context import web

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class CalendarPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, description="the calendar collection's URL")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(
        min_length=1, max_length=1000, description="an app password or token; never returned"
    )


def _int(state: dict[str, str], name: str) -> int | None:
    value = state.get(name)
    return int(value) if value else None


def calendar_view(connection: Connection, state: dict[str, str]) -> dict[str, Any]:
    return {
        "name": connection.name,
        "url": connection.url,
        "username": connection.username,
        "connected_at": connection.created_ms,
        "state": {
            "last_sync": _int(state, "last_sync"),
            "last_ok": _int(state, "last_ok"),
            "next": _int(state, "next"),
            "events_seen": _int(state, "seen") or 0,
            "events_rewritten": _int(state, "rewritten") or 0,
            "last_round_changed": _int(state, "last_changed") or 0,
            "last_round_requests": _int(state, "last_requests") or 0,
            "failures": _int(state, "failures") or 0,
            "error": state.get("error") or None,
            "error_message": state.get("error_message") or None,
        },
    }


async def _host(request: Request) -> str:
    host = str(request.path_params["host"])
    if not HOST_ID_RE.match(host):
        raise UnknownHost("no such host")
    authorize_host(request, host)
    await web(request).hosts.require_host(host)
    return host


def _name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not NAME_RE.match(name):
        raise UnknownCalendar("a calendar name is 1 to 40 of a-z, 0-9 and -")
    return name


async def put_calendar(request: Request) -> Response:
    """Connect (or reconnect) a calendar: checked at once, then synced."""
    host = await _host(request)
    name = _name(request)
    body: CalendarPut = await read_body(request, CalendarPut)
    sync = web(request).calendar_sync
    existed = any(c.name == name for c, _ in await sync.status(host))
    connection = await sync.connect(host, name, body.url, body.username, body.password)
    return JSONResponse(calendar_view(connection, {}), status_code=200 if existed else 201)


async def list_calendars(request: Request) -> Response:
    host = await _host(request)
    found = await web(request).calendar_sync.status(host)
    return JSONResponse({"calendars": [calendar_view(c, s) for c, s in found]})


async def delete_calendar(request: Request) -> Response:
    """Disconnect: the credentials and the sync memory are forgotten."""
    host = await _host(request)
    if not await web(request).calendar_sync.disconnect(host, _name(request)):
        raise UnknownCalendar("no connected calendar has this name")
    return Response(status_code=204)


async def sync_now(request: Request) -> Response:
    host = await _host(request)
    if not await web(request).calendar_sync.sync_soon(host, _name(request)):
        raise UnknownCalendar("no connected calendar has this name")
    return JSONResponse({"status": "queued"}, status_code=202)


routes = [
    Route("/api/hosts/{host}/calendars", list_calendars, methods=["GET"]),
    Route("/api/hosts/{host}/calendars/{name}", put_calendar, methods=["PUT"]),
    Route("/api/hosts/{host}/calendars/{name}", delete_calendar, methods=["DELETE"]),
    Route("/api/hosts/{host}/calendars/{name}/sync", sync_now, methods=["POST"]),
]
