"""The one exception tree of Foyer, and the wire codes it maps to.

    FoyerError
    ├── ProtocolError            carries a wire ``ErrorCode`` (PROTOCOL.md, Errors)
    │   ├── BadFrame             not decodable
    │   ├── FrameTooLarge        over the 64 KiB limit
    │   ├── BadMessage           wrong type or fields
    │   ├── Unauthorized         bad, missing or expired token
    │   ├── UnknownLink          no host behind the slug
    │   ├── UnknownGuest         no such guest waiting
    │   ├── AlreadyResolved      another reply won
    │   ├── NotInMeeting         merge without in_meeting
    │   ├── Locked               the link refuses knocks
    │   ├── RateLimited          over a knock limit
    │   └── InternalError        anything unexpected (no detail on the wire)
    ├── InvalidTransition        a lobby event the state table does not allow
    ├── InvalidSlug              a custom slug breaks a rule (HTTP 422)
    ├── SlugTaken                the slug belongs to another host (HTTP 409)
    ├── HostExists               a host with this id exists (HTTP 409)
    ├── UnknownHost              no host with this id (HTTP 404)
    ├── BadRequest               an HTTP body that is not JSON (HTTP 400)
    │   └── InvalidCalendar      not iCalendar, too big, or a bad calendar event
    ├── InvalidBody              an HTTP body that breaks its schema (HTTP 422)
    │   └── RefusedWebhookTarget a webhook URL Foyer will not call (HTTP 422)
    ├── UnknownWebhook           no such webhook endpoint or delivery (HTTP 404)
    ├── UnknownCalendar          no connected calendar of this name (HTTP 404)
    ├── CalendarRefused          the CalDAV server refused the credentials (HTTP 422)
    ├── NotACalendarUrl          the URL is not a CalDAV calendar (HTTP 422)
    ├── CalendarUnreachable      the CalDAV server does not answer (HTTP 502)
    ├── ApiUnauthorized          missing or wrong API key (HTTP 401)
    ├── StoreUnavailable         Redis does not answer (HTTP 503)
    ├── UnknownClient            no OAuth client with this id (HTTP 404)
    ├── OAuthRefused             an authorization request Foyer must not redirect
    │                            back (unknown client or redirect URI: HTTP 400 page)
    ├── UnknownMeeting           no such meeting (HTTP 404)
    ├── UnknownBooking           no such booking in this workspace (HTTP 404)
    ├── BookingCancelled         the booking was cancelled: it cannot change (HTTP 409)
    ├── BookedMeeting            a booking's meeting changes with its booking (HTTP 409)
    ├── IdempotencyKeyReused     an Idempotency-Key sent again with another body (HTTP 422)
    ├── ProviderFailed           the meeting provider failed or timed out (HTTP 502)
    ├── EmbeddedStoreError       the embedded Valkey could not start
    └── ConnectionClosed         (client) the server closed the socket

A ``ProtocolError`` raised by the Python client also carries ``close_code``
when the server closed the connection after the error (a refused ``hello`` or
``knock``); it is ``None`` otherwise.

HTTP statuses are given to these in one table, ``server/web/errors.py``.

Reply errors (``ErrorCode``) and close codes (``CloseCode``) are two separate
code spaces, as in centrifuge. The message of a ``ProtocolError`` is written
for people and never holds exception text.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    BAD_FRAME = "bad_frame"
    BAD_MESSAGE = "bad_message"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_LINK = "unknown_link"
    UNKNOWN_GUEST = "unknown_guest"
    ALREADY_RESOLVED = "already_resolved"
    NOT_IN_MEETING = "not_in_meeting"
    LOCKED = "locked"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL = 1011
    SERVICE_RESTART = 1012  # the process is draining: reconnect (elsewhere) and resume
    UNAUTHORIZED = 4001
    UNKNOWN_LINK = 4004
    HANDSHAKE_TIMEOUT = 4008
    SLOW_CONSUMER = 4013
    RATE_LIMITED = 4029
    REPLACED = 4409  # addition: a newer connection resumed this guest
    LOCKED = 4423


class FoyerError(Exception):
    """Root of every error Foyer raises on purpose."""


class ProtocolError(FoyerError):
    """An error with a wire code; ``str(exc)`` is safe to show to a peer."""

    code: ErrorCode = ErrorCode.INTERNAL
    default_message = "internal error"

    def __init__(self, message: str | None = None, *, close_code: int | None = None) -> None:
        super().__init__(message or self.default_message)
        # (Client side) the close code the server sent after this error, when
        # the error ended the connection (a refused ``hello``/``knock``).
        self.close_code = close_code

    @property
    def message(self) -> str:
        return str(self.args[0])


class BadFrame(ProtocolError):
    code = ErrorCode.BAD_FRAME
    default_message = "frame could not be decoded"


class FrameTooLarge(ProtocolError):
    code = ErrorCode.TOO_LARGE
    default_message = "frame is larger than 64 KiB"


class BadMessage(ProtocolError):
    code = ErrorCode.BAD_MESSAGE
    default_message = "message has a wrong type or fields"


class Unauthorized(ProtocolError):
    code = ErrorCode.UNAUTHORIZED
    default_message = "unauthorized"


class UnknownLink(ProtocolError):
    code = ErrorCode.UNKNOWN_LINK
    default_message = "no host has this link"


class UnknownGuest(ProtocolError):
    code = ErrorCode.UNKNOWN_GUEST
    default_message = "no such guest is waiting"


class AlreadyResolved(ProtocolError):
    code = ErrorCode.ALREADY_RESOLVED
    default_message = "this guest was already answered"


class NotInMeeting(ProtocolError):
    code = ErrorCode.NOT_IN_MEETING
    default_message = "merge needs presence in_meeting with a meeting"


class Locked(ProtocolError):
    code = ErrorCode.LOCKED
    default_message = "this link is locked"


class RateLimited(ProtocolError):
    code = ErrorCode.RATE_LIMITED
    default_message = "too many knocks, try again in a minute"


class InternalError(ProtocolError):
    code = ErrorCode.INTERNAL
    default_message = "internal error"


class InvalidTransition(FoyerError):
    """h11-style: can't handle EVENT when STATE."""


class InvalidSlug(FoyerError):
    """A requested slug breaks the rule named in the message."""


class SlugTaken(FoyerError):
    """The slug belongs to another host."""


class HostExists(FoyerError):
    """A host with this id exists already."""


class UnknownHost(FoyerError):
    """No host has this id."""


class BadRequest(FoyerError):
    """An HTTP request body that is not JSON."""


class InvalidCalendar(BadRequest):
    """A calendar the rewrite cannot read: not iCalendar, over a size limit, or
    an event that breaks a rule; the message names what and where (a line)."""


class InvalidBody(FoyerError):
    """An HTTP request body that breaks its schema; the message names the field."""


class RefusedWebhookTarget(InvalidBody):
    """A webhook URL that is not http(s), or resolves to a private address
    that is not allow-listed (server-side request forgery)."""


class UnknownCalendar(FoyerError):
    """The host has no connected calendar of this name."""


class CalendarRefused(FoyerError):
    """The CalDAV server answered 401/403 to these credentials."""


class NotACalendarUrl(FoyerError):
    """The URL answers, but is not a CalDAV calendar collection."""


class CalendarUnreachable(FoyerError):
    """The CalDAV server does not answer, or fails (5xx, timeout)."""


class UnknownWebhook(FoyerError):
    """No webhook endpoint (or no delivery of it) has this id."""


class ApiUnauthorized(FoyerError):
    """An HTTP API call without the right API key."""


class StoreUnavailable(FoyerError):
    """Redis does not answer (the message is safe to show)."""


class UnknownClient(FoyerError):
    """No OAuth client has this id."""


class OAuthRefused(FoyerError):
    """An authorization request whose client or redirect URI is missing or
    unknown: RFC 6749 section 4.1.2.1 forbids redirecting it anywhere, so the
    host sees an error page. The message is written for people."""


class UnknownMeeting(FoyerError):
    """No meeting has this id."""


class UnknownBooking(FoyerError):
    """No booking has this id in this workspace."""


class BookingCancelled(FoyerError):
    """The booking was cancelled; it cannot be changed any more."""


class BookedMeeting(FoyerError):
    """The meeting belongs to a booking: change or cancel the booking instead."""


class IdempotencyKeyReused(FoyerError):
    """An ``Idempotency-Key`` came again with a different request body."""


class ProviderFailed(FoyerError):
    """The meeting provider did not make the meeting (the message says why)."""


class EmbeddedStoreError(FoyerError):
    """The embedded Valkey could not be started."""


class ConnectionClosed(FoyerError):
    """(Client side) the server closed the connection, with this close code."""

    def __init__(self, close_code: int | None = None, reason: str = "") -> None:
        super().__init__(f"closed ({close_code}){': ' + reason if reason else ''}")
        self.close_code = close_code
        self.reason = reason


_BY_CODE: dict[str, type[ProtocolError]] = {
    cls.code.value: cls
    for cls in (
        BadFrame,
        FrameTooLarge,
        BadMessage,
        Unauthorized,
        UnknownLink,
        UnknownGuest,
        AlreadyResolved,
        NotInMeeting,
        Locked,
        RateLimited,
        InternalError,
    )
}


def error_for_code(
    code: str, message: str | None = None, *, close_code: int | None = None
) -> ProtocolError:
    """Rebuild the exception for a wire code: the store uses it for a status a
    Lua script returns, the Python client for an ``error`` frame (with the
    close code when the server then closed the connection). A code this
    version does not know, say from a newer server, becomes ``InternalError``
    with the server's message."""
    return _BY_CODE.get(code, InternalError)(message, close_code=close_code)


CLOSE_FOR_CODE: dict[ErrorCode, CloseCode] = {
    ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
    ErrorCode.UNKNOWN_LINK: CloseCode.UNKNOWN_LINK,
    ErrorCode.LOCKED: CloseCode.LOCKED,
    ErrorCode.RATE_LIMITED: CloseCode.RATE_LIMITED,
    ErrorCode.TOO_LARGE: CloseCode.TOO_LARGE,
    ErrorCode.INTERNAL: CloseCode.INTERNAL,
}
