"""What the HTTP handlers and pages use, handed over by the Node as
``app.state.web`` (explicit collaborators, not the Node itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from server.access.oauth import AuthorizationServer
from server.access.reply_links import ReplyLinks
from server.access.tokens import Tokens
from server.calendars.sync import CalendarSync
from server.hosts.directory import Directory
from server.hosts.settings import HostSettings
from server.lobby.waiting_room import WaitingRoom
from server.meetings.bookings import Bookings
from server.meetings.connections import Connections
from server.meetings.feed import CalendarFeeds
from server.meetings.planned import PlannedMeetings
from server.metrics import Metrics
from server.notify.webhooks import Webhooks
from server.storage.hosts import HostStore
from server.storage.store import Store


@dataclass(frozen=True, slots=True)
class MeetingsContext:
    """Dedicated meetings, connections, bookings and calendar feeds."""

    meetings: PlannedMeetings
    bookings: Bookings
    connections: Connections
    feeds: CalendarFeeds
    providers: frozenset[str]  # the connection providers this deployment can serve


@dataclass(frozen=True, slots=True)
class WebContext:
    store: Store
    hosts: HostStore
    directory: Directory
    host_settings: HostSettings
    tokens: Tokens
    api_key: str
    public_url: str | None
    metrics: Metrics
    room: WaitingRoom  # replies over HTTP go through the same steps as a device's
    reply_links: ReplyLinks  # the away email's one-click links
    webhooks: Webhooks  # the endpoints registered through the API
    calendar_sync: CalendarSync  # connected CalDAV calendars
    # Why this process should get no traffic now (``/readyz``), or None.
    unready: Callable[[], Awaitable[str | None]]
    trusted_proxies: list[str] = field(default_factory=list)
    link_info_limit: int = 0  # GET /api/links/{slug} per client address per minute
    metrics_token: str | None = None
    oauth: AuthorizationServer | None = None  # connecting an account (server.web.oauth)
    planned: MeetingsContext | None = None  # None: the meetings API answers 404


def web(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context
