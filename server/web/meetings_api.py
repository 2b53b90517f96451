"""The HTTP API of dedicated meetings, connections, bookings and calendar
feeds (docs/meetings.md), and the join link page ``/m/{id}``.

Auth: ``POST /api/meetings``, ``GET /api/meetings/{id}`` and the feed
rotation take the API key or the host's own token; connections and bookings
(a scheduling tool's calls) take the API key; the calendar feed is opened
by its secret URL alone (a wrong or old secret answers 404).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from protocol.errors import (
    BadRequest,
    BookedMeeting,
    InvalidBody,
    InvalidCalendar,
    UnknownBooking,
    UnknownHost,
    UnknownMeeting,
)
from protocol.messages import HOST_ID_RE
from server import i18n
from server.hosts.settings import EmailAddress
from server.meetings.bookings import VIDEO, Booking, BookingRequest
from server.meetings.calendar import (
    DedicatedLink,
    PersonalLinks,
    PlannedEvent,
    rewrite_event,
    rewrite_ics,
)
from server.meetings.connections import PROVIDERS, Connection
from server.meetings.invitation import feed, invitation
from server.meetings.planned import Meeting, is_meeting_id, join_link
from server.storage.hosts import HostRecord
from server.web.api import _authorize, _authorize_host, _base_url, _body
from server.web.context import MeetingsContext, web
from server.web.oauth import bearer_host
from server.web.pages import language, page_headers, render

Millis = Annotated[int, Field(ge=0, le=2**53, description="ms since the Unix epoch, UTC")]
Instant = Annotated[
    Millis | AwareDatetime,
    Field(description="ms since the Unix epoch, or ISO 8601 with a time zone"),
]
Title = Annotated[str, Field(min_length=1, max_length=200)]
WORKSPACE_RE = HOST_ID_RE
CALENDAR = "text/calendar; charset=utf-8"


class MeetingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(pattern=HOST_ID_RE.pattern, description="the host id")
    title: Title | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None


class ConnectionPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = Field(description="template | webhook | foyer")
    account: str = Field(min_length=1, max_length=200, description="the account's name or id")


class BookingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(pattern=HOST_ID_RE.pattern, description="the host id (the user booked)")
    starts_at: Instant
    ends_at: Instant
    title: Title
    attendees: list[EmailAddress] = Field(default_factory=list, max_length=100)
    location: str = Field(
        default=VIDEO,
        min_length=1,
        max_length=500,
        description='"video" asks for a meeting link; anything else (an address, a phone) none',
    )


class BookingPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts_at: Instant
    ends_at: Instant
    title: Title | None = None


def _ms(value: int | datetime | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


def _planned(request: Request) -> MeetingsContext:
    found = web(request).planned
    if found is None:
        raise UnknownMeeting("meetings are not served here")
    return found


def _id(request: Request, name: str, what: str) -> str:
    value = str(request.path_params[name])
    if not HOST_ID_RE.match(value):
        raise InvalidBody(f"{what}: 1 to 64 letters, digits or _.:-")
    return value


async def _host(request: Request, host: str) -> HostRecord:
    return await web(request).hosts.require_host(host)


def _connection_view(conn: Connection) -> dict[str, Any]:
    return {
        "workspace": conn.workspace,
        "user": conn.user,
        "provider": conn.provider,
        "account": conn.account,
        "connected_at": conn.connected_ms,
    }


# -------------------------------------------------------------------- meetings


async def create_meeting(request: Request) -> Response:
    """``POST /api/meetings``: a dedicated meeting now (Meet Now: a unique link
    per call) or for a time."""
    planned = _planned(request)
    body = await _body(request, MeetingCreate)
    # A connected app's OAuth token (scope meetings:write) acts for its host too.
    if await bearer_host(request) != body.host:
        _authorize_host(request, body.host)
    record = await _host(request, body.host)
    title = body.title or f"Meeting with {record['name']}"
    provider = web(request).meeting_provider
    instant = body.starts_at is None and body.ends_at is None
    if instant and provider is not None and record["settings"].get("instant_personal_room"):
        # The host's setting: instant meetings (Meet now) use the personal room.
        room = provider.personal(record["room"], {"title": title})
        base = _base_url(request)
        view = {
            "id": record["room"],
            "host": record["id"],
            "title": title,
            "starts_at": None,
            "ends_at": None,
            "url": room["url"],
            "join_link": f"{base}/l/{record['slug']}",
            "status": "personal_room",
            "booking": None,
        }
        return JSONResponse(view, status_code=201)
    meeting, _ = await planned.meetings.create(
        record["id"], title, _ms(body.starts_at), _ms(body.ends_at)
    )
    return JSONResponse(meeting.view(_base_url(request)), status_code=201)


async def get_meeting(request: Request) -> Response:
    meeting = await _planned(request).meetings.get(str(request.path_params["meeting"]))
    _authorize_host(request, meeting.host)
    return JSONResponse(meeting.view(_base_url(request)))


async def cancel_meeting(request: Request) -> Response:
    """``DELETE /api/meetings/{id}``: cancel it (its join link then says so);
    a booking's meeting is cancelled with its booking instead."""
    planned = _planned(request)
    meeting = await planned.meetings.get(str(request.path_params["meeting"]))
    _authorize_host(request, meeting.host)
    if meeting.booking is not None:
        raise BookedMeeting(
            "this meeting belongs to a booking: cancel the booking "
            f"(/api/workspaces/{meeting.booking.replace('/', '/bookings/')})"
        )
    cancelled = await planned.meetings.cancel(meeting)
    return JSONResponse(cancelled.view(_base_url(request)))


# ----------------------------------------------------------------- connections


async def put_connection(request: Request) -> Response:
    """Connect (or reconnect: it replaces the previous) the user's account."""
    _authorize(request)
    planned = _planned(request)
    workspace = _id(request, "ws", "workspace")
    user = _id(request, "user", "user")
    body = await _body(request, ConnectionPut)
    if body.provider not in PROVIDERS:
        raise InvalidBody(f"provider must be one of {', '.join(PROVIDERS)}")
    if body.provider not in planned.providers:
        raise InvalidBody(f"provider {body.provider!r} is not set up on this deployment")
    await _host(request, user)
    conn = await planned.connections.connect(workspace, user, body.provider, body.account)
    return JSONResponse(_connection_view(conn))


async def get_connection(request: Request) -> Response:
    _authorize(request)
    found = await _planned(request).connections.get(
        _id(request, "ws", "workspace"), _id(request, "user", "user")
    )
    if found is None:
        raise UnknownHost("this user has no connection in this workspace")
    return JSONResponse(_connection_view(found))


async def delete_connection(request: Request) -> Response:
    """Disconnect: new bookings get no link until a connect."""
    _authorize(request)
    workspace, user = _id(request, "ws", "workspace"), _id(request, "user", "user")
    await _planned(request).connections.disconnect(workspace, user)
    oauth = web(request).oauth
    if oauth is not None:
        await oauth.revoke_for(workspace, user)  # the app's tokens end with the connection
    return Response(status_code=204)


# -------------------------------------------------------------------- bookings


async def create_booking(request: Request) -> Response:
    _authorize(request)
    planned = _planned(request)
    workspace = _id(request, "ws", "workspace")
    body = await _body(request, BookingCreate)
    starts_at, ends_at = _ms(body.starts_at), _ms(body.ends_at)
    assert starts_at is not None and ends_at is not None
    await _host(request, body.host)
    wanted = BookingRequest(
        host=body.host,
        title=body.title,
        starts_at=starts_at,
        ends_at=ends_at,
        attendees=tuple(body.attendees),
        location=body.location,
    )
    key = request.headers.get("idempotency-key")
    booking, made = await planned.bookings.create(workspace, wanted, key)
    return JSONResponse(booking.view(_base_url(request)), status_code=201 if made else 200)


async def _booking(request: Request) -> Booking:
    _authorize(request)
    booking_id = str(request.path_params["booking"])
    if not HOST_ID_RE.match(booking_id):
        raise UnknownBooking("no such booking in this workspace")
    return await _planned(request).bookings.get(_id(request, "ws", "workspace"), booking_id)


async def _invitation(request: Request, booking: Booking) -> Response:
    record = await web(request).hosts.get_host(booking.host)
    organizer = record["email"] if record else None
    return Response(
        invitation(booking, _base_url(request), organizer),
        media_type=CALENDAR,
        headers={"Content-Disposition": f'inline; filename="{booking.id}.ics"'},
    )


async def get_booking(request: Request) -> Response:
    """The booking's JSON, or with ``Accept: text/calendar`` its invitation."""
    booking = await _booking(request)
    if "text/calendar" in request.headers.get("accept", ""):
        return await _invitation(request, booking)
    return JSONResponse(booking.view(_base_url(request)))


async def get_booking_ics(request: Request) -> Response:
    return await _invitation(request, await _booking(request))


async def patch_booking(request: Request) -> Response:
    """Reschedule: new times (and title); the meeting and its link stay."""
    booking = await _booking(request)
    body = await _body(request, BookingPatch)
    starts_at, ends_at = _ms(body.starts_at), _ms(body.ends_at)
    assert starts_at is not None and ends_at is not None
    changed = await _planned(request).bookings.reschedule(
        booking.workspace, booking.id, starts_at, ends_at, body.title
    )
    return JSONResponse(changed.view(_base_url(request)))


async def cancel_booking(request: Request) -> Response:
    booking = await _booking(request)
    cancelled = await _planned(request).bookings.cancel(booking.workspace, booking.id)
    return JSONResponse(cancelled.view(_base_url(request)))


# -------------------------------------------------------------- calendar feed


async def rotate_feed(request: Request) -> Response:
    """A new secret feed URL; the previous one answers 404 from now on."""
    host = str(request.path_params["host"])
    _authorize_host(request, host)
    if not HOST_ID_RE.match(host):
        raise UnknownHost("no such host")
    record = await _host(request, host)
    secret = await _planned(request).feeds.rotate(record["id"])
    url = f"{_base_url(request)}/api/hosts/{record['id']}/calendar.ics?key={secret}"
    return JSONResponse({"url": url}, status_code=201)


async def calendar_feed(request: Request) -> Response:
    planned = _planned(request)
    host = str(request.path_params["host"])
    secret = request.query_params.get("key", "")
    if not HOST_ID_RE.match(host) or not await planned.feeds.opens(host, secret):
        raise UnknownHost("no such calendar feed")
    record = await _host(request, host)
    bookings = await planned.bookings.for_host(host)
    meetings = await planned.meetings.for_host(host)
    body = feed(record["name"], bookings, meetings, _base_url(request))
    return Response(body, media_type=CALENDAR, headers={"Cache-Control": "no-store"})


# ------------------------------------------------------------- calendar rewrite

DEFAULT_MINUTES = 30


def _event_times(event: PlannedEvent) -> tuple[int | None, int | None]:
    """The meeting's times: none without a known start; a missing or
    backwards end is the start plus the link's duration (else 30 minutes)."""
    starts = _ms(event.starts_at)
    if starts is None:
        return None, None
    ends = _ms(event.ends_at)
    if ends is None or ends <= starts:
        minutes = event.options.get("duration")
        ends = starts + (minutes if isinstance(minutes, int) else DEFAULT_MINUTES) * 60_000
    return starts, ends


async def rewrite_calendar(request: Request) -> Response:
    """``POST /api/calendar/rewrite?host=``: an ``.ics`` (``text/calendar``) or one
    event as JSON (``host`` may be a field of it): each one-off event that holds
    the host's personal link gets a dedicated meeting in its place, made once
    per (host, event key) however often the event is sent (docs/meetings.md)."""
    planned = _planned(request)
    raw = await request.body()
    is_ics = "text/calendar" in request.headers.get("content-type", "")
    event: dict[str, Any] | None = None
    if not is_ics:
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the body must be text/calendar or a JSON event") from None
        if not isinstance(event, dict):
            raise InvalidCalendar("the event must be a JSON object")
    host = request.query_params.get("host") or (event or {}).pop("host", None)
    if not isinstance(host, str) or not HOST_ID_RE.match(host):
        raise InvalidBody("host: the host id, as a query parameter (or a field of a JSON event)")
    _authorize_host(request, host)
    record = await _host(request, host)
    base = _base_url(request)
    bases = tuple(dict.fromkeys([base, str(request.base_url).rstrip("/")]))
    links = PersonalLinks(bases=bases, slugs=(record["slug"], *record["previous"]))

    async def make(planned_event: PlannedEvent) -> DedicatedLink:
        title = (planned_event.title or "").strip()[:200] or f"Meeting with {record['name']}"
        starts, ends = _event_times(planned_event)
        key = "cal:" + hashlib.sha256(planned_event.key.encode()).hexdigest()
        meeting, _ = await planned.meetings.create(host, title, starts, ends, key=key)
        return DedicatedLink(meeting.id, join_link(base, meeting.id))

    if event is None:
        result = await rewrite_ics(raw, links, make)
        outcomes = [
            {"uid": o.uid, "recurrence_id": o.recurrence_id, "action": o.action,
             "meeting_id": o.meeting_id}
            for o in result.events
        ]  # fmt: skip
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"ics": result.ics.decode(errors="replace"), "events": outcomes})
        return Response(result.ics, media_type=CALENDAR)
    rewritten, outcome = await rewrite_event(event, links, make)
    return JSONResponse(
        {
            "event": rewritten,
            "outcome": {
                "uid": outcome.uid,
                "recurrence_id": outcome.recurrence_id,
                "action": outcome.action,
                "meeting_id": outcome.meeting_id,
            },
        }
    )


# ------------------------------------------------------------------- join link


def _meeting_page(request: Request, kind: str, status: int, title: str = "") -> HTMLResponse:
    """The page of a join link that leads nowhere (unknown or cancelled), in
    the visitor's language."""
    lang = language(request)
    values = {
        "lang": lang,
        "heading": i18n.t(lang, f"meeting.{kind}_heading"),
        "lead": i18n.t(lang, f"meeting.{kind}", {"title": title}),
    }
    body = render("meeting.html", lang, values)
    return HTMLResponse(body, status_code=status, headers=page_headers(frameable=True))


async def join_page(request: Request) -> Response:
    """``GET /m/{id}``: to the host's waiting room with the meeting (the knock
    carries it, as a session), or a page that says it is cancelled or unknown."""
    meeting_id = str(request.path_params["meeting"])
    planned = web(request).planned
    meeting: Meeting | None = None
    if planned is not None and is_meeting_id(meeting_id):
        try:
            meeting = await planned.meetings.get(meeting_id)
        except UnknownMeeting:
            meeting = None
    if meeting is None:
        return _meeting_page(request, "unknown", 404)
    if meeting.cancelled:
        return _meeting_page(request, "cancelled", 410, meeting.title)
    record = await web(request).hosts.get_host(meeting.host)
    if record is None:
        return _meeting_page(request, "unknown", 404)
    lang = request.query_params.get("lang")
    keep = f"&lang={quote(lang, safe='')}" if lang else ""
    return RedirectResponse(f"/l/{record['slug']}?s={meeting.id}{keep}", status_code=303)


routes: list[BaseRoute] = [
    Route("/api/meetings", create_meeting, methods=["POST"]),
    Route("/api/meetings/{meeting}", get_meeting, methods=["GET"]),
    Route("/api/meetings/{meeting}", cancel_meeting, methods=["DELETE"]),
    Route(
        "/api/workspaces/{ws}/users/{user}/connection",
        put_connection,
        methods=["PUT"],
    ),
    Route(
        "/api/workspaces/{ws}/users/{user}/connection",
        get_connection,
        methods=["GET"],
    ),
    Route(
        "/api/workspaces/{ws}/users/{user}/connection",
        delete_connection,
        methods=["DELETE"],
    ),
    Route("/api/workspaces/{ws}/bookings", create_booking, methods=["POST"]),
    Route("/api/workspaces/{ws}/bookings/{booking}.ics", get_booking_ics, methods=["GET"]),
    Route("/api/workspaces/{ws}/bookings/{booking}/cancel", cancel_booking, methods=["POST"]),
    Route("/api/workspaces/{ws}/bookings/{booking}", get_booking, methods=["GET"]),
    Route("/api/workspaces/{ws}/bookings/{booking}", patch_booking, methods=["PATCH"]),
    Route("/api/workspaces/{ws}/bookings/{booking}", cancel_booking, methods=["DELETE"]),
    Route("/api/hosts/{host}/calendar-feed", rotate_feed, methods=["POST"]),
    Route("/api/hosts/{host}/calendar.ics", calendar_feed, methods=["GET"]),
    Route("/api/calendar/rewrite", rewrite_calendar, methods=["POST"]),
    Route("/m/{meeting}", join_page, methods=["GET", "HEAD"]),
]
