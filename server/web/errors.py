"""The one table that gives every error an HTTP status and a JSON body
``{code, message}`` (Starlette's exception handlers, looked up by MRO)."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from protocol.errors import (
    AlreadyResolved,
    ApiUnauthorized,
    BadMessage,
    BadRequest,
    BookedMeeting,
    BookingCancelled,
    CalendarRefused,
    CalendarUnreachable,
    FoyerError,
    HostExists,
    IdempotencyKeyReused,
    InvalidBody,
    InvalidSlug,
    Locked,
    NotACalendarUrl,
    NotInMeeting,
    OAuthRefused,
    ProviderFailed,
    RateLimited,
    RefusedWebhookTarget,
    RetiredLink,
    SlugTaken,
    StoreUnavailable,
    UnknownBooking,
    UnknownCalendar,
    UnknownClient,
    UnknownGuest,
    UnknownHost,
    UnknownLink,
    UnknownMeeting,
    UnknownWebhook,
)

log = logging.getLogger("foyer.web")

# error -> (status, code); the message is the exception's own (written for people).
HTTP_ERRORS: dict[type[Exception], tuple[int, str]] = {
    BadRequest: (400, "bad_request"),
    ApiUnauthorized: (401, "unauthorized"),
    UnknownHost: (404, "not_found"),
    UnknownLink: (404, "unknown_link"),
    RetiredLink: (410, "retired_link"),
    HostExists: (409, "conflict"),
    SlugTaken: (409, "slug_taken"),
    InvalidSlug: (422, "invalid_slug"),
    InvalidBody: (422, "invalid"),
    RefusedWebhookTarget: (422, "refused_target"),
    UnknownWebhook: (404, "not_found"),
    UnknownCalendar: (404, "not_found"),
    CalendarRefused: (422, "calendar_refused"),
    NotACalendarUrl: (422, "not_a_calendar"),
    CalendarUnreachable: (502, "calendar_unreachable"),
    BadMessage: (422, "invalid"),
    RateLimited: (429, "rate_limited"),
    StoreUnavailable: (503, "unavailable"),
    UnknownGuest: (404, "unknown_guest"),
    AlreadyResolved: (409, "already_resolved"),
    NotInMeeting: (409, "not_in_meeting"),
    Locked: (423, "locked"),
    UnknownClient: (404, "not_found"),
    OAuthRefused: (400, "invalid_request"),
    UnknownMeeting: (404, "unknown_meeting"),
    UnknownBooking: (404, "unknown_booking"),
    BookingCancelled: (409, "booking_cancelled"),
    BookedMeeting: (409, "booked_meeting"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    ProviderFailed: (502, "provider_failed"),
}
_STARLETTE = {
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "method not allowed"),
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _status_of(exc: Exception) -> tuple[int, str] | None:
    for cls in type(exc).__mro__:
        found = HTTP_ERRORS.get(cls)
        if found is not None:
            return found
    return None


async def on_foyer_error(request: Request, exc: Exception) -> Response:
    found = _status_of(exc)
    if found is None:
        return await on_error(request, exc)
    status, code = found
    return error_response(status, code, str(exc))


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, message = _STARLETTE.get(exc.status_code, ("bad_request", str(exc.detail)))
    response = error_response(exc.status_code, code, message)
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; a path
        # served by several routes (GET here, DELETE there) allows them all.
        allowed = _allowed_methods(request) or (exc.headers or {}).get("Allow", "")
        if allowed:
            response.headers["Allow"] = allowed
    return response


def _allowed_methods(request: Request) -> str:
    methods: set[str] = set()
    for route in getattr(request.app, "routes", ()):
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


async def on_store_error(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s: %s", request.url.path, type(exc).__name__)
    return error_response(503, "unavailable", "the store does not answer, try again")


async def on_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error")


HANDLERS = {
    FoyerError: on_foyer_error,
    HTTPException: on_http_error,
    RedisError: on_store_error,
    Exception: on_error,
}
