"""Dedicated (planned) meetings: a meeting of its own, with its own join link
on Foyer (``/m/{id}``) that leads through the host's waiting room
(docs/meetings.md, Meetings).

A meeting is stored under its host's hash tag (msgpack), listed in the host's
set, and found by id through ``foyer:meeting:<id>`` -> host. A meeting made
for a key (a calendar event, a booking) is claimed for that key in the same
script that writes it, so the same key never makes two meetings. The
provider is called before anything is written: a provider that fails leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from protocol.errors import InternalError, InvalidBody, UnknownMeeting
from server.meetings.events import MeetingEvents
from server.meetings.provider import MeetingOrder, Provider
from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, text, unpack

SCHEDULED, CANCELLED = "scheduled", "cancelled"
CAS_ATTEMPTS = 50
MAX_KEY = 500


@dataclass(frozen=True, slots=True)
class Meeting:
    id: str
    host: str
    title: str
    starts_at: int | None  # ms since the Unix epoch, UTC; None: "now" (Meet Now)
    ends_at: int | None
    url: str  # where admitted guests go (the provider's)
    provider: str
    status: str = SCHEDULED
    created_ms: int = 0
    sequence: int = 0  # bumped on every change (iCalendar SEQUENCE)
    booking: str | None = None  # "<workspace>/<booking id>" when a booking made it

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED

    def view(self, base_url: str) -> dict[str, Any]:
        """The API's JSON for it."""
        return {
            "id": self.id,
            "host": self.host,
            "title": self.title,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "url": self.url,
            "join_link": join_link(base_url, self.id),
            "status": self.status,
            "booking": self.booking,
        }


def join_link(base_url: str, meeting_id: str) -> str:
    return f"{base_url.rstrip('/')}/m/{meeting_id}"


def when_text(starts_at: int | None, ends_at: int | None) -> str | None:
    """``2026-12-01 10:00 to 10:30 UTC``, as the host's guest card shows it."""
    if starts_at is None:
        return None
    start = datetime.fromtimestamp(starts_at / 1000, UTC)
    out = start.strftime("%Y-%m-%d %H:%M")
    if ends_at is not None:
        end = datetime.fromtimestamp(ends_at / 1000, UTC)
        out += " to " + end.strftime("%H:%M" if end.date() == start.date() else "%Y-%m-%d %H:%M")
    return out + " UTC"


def check_times(starts_at: int | None, ends_at: int | None) -> None:
    if (starts_at is None) != (ends_at is None):
        raise InvalidBody("starts_at and ends_at come together")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise InvalidBody("ends_at must be after starts_at")


def _meeting_key(host: str, meeting_id: str) -> str:
    return f"{keys.tag(host)}:meeting:{meeting_id}"


def _claim_key(host: str, key: str) -> str:
    return f"{keys.tag(host)}:meeting-key:{key}"


def _list_key(host: str) -> str:
    return f"{keys.tag(host)}:meetings"


def _index_key(meeting_id: str) -> str:
    return f"foyer:meeting:{meeting_id}"


def _decode(raw: bytes) -> Meeting:
    return Meeting(**unpack(raw))


def new_id() -> str:
    return "m" + secrets.token_hex(10)


def is_meeting_id(value: str) -> bool:
    return len(value) == 21 and value[0] == "m" and all(c in "0123456789abcdef" for c in value[1:])


class PlannedMeetings:
    """Create, find, reschedule and cancel dedicated meetings."""

    def __init__(
        self,
        batch: Batcher,
        providers: dict[str, Provider],
        default_provider: str,
        events: MeetingEvents,
        *,
        id_secret: bytes | None = None,
    ) -> None:
        if default_provider not in providers:
            raise ValueError(f"no meeting provider named {default_provider!r}")
        self.batch = batch
        self.providers = providers
        self.default_provider = default_provider
        self.events = events
        # A keyed meeting's id is derived from (host, key) with this secret: a
        # retry after a failure asks the provider for the same meeting id (its
        # ``webhook-id``), so the integrator can tell it is the same meeting.
        self._id_secret = id_secret or secrets.token_bytes(32)

    def _id_for(self, host: str, key: str | None) -> str:
        if key is None:
            return new_id()
        mac = hmac.new(self._id_secret, f"{host}\n{key}".encode(), hashlib.sha256)
        return "m" + mac.hexdigest()[:20]

    async def create(
        self,
        host: str,
        title: str,
        starts_at: int | None = None,
        ends_at: int | None = None,
        *,
        provider: str | None = None,
        workspace: str | None = None,
        account: str | None = None,
        key: str | None = None,
        booking: str | None = None,
    ) -> tuple[Meeting, bool]:
        """A new meeting, or (with ``key``) the one made for that key before;
        the flag says whether this call made it."""
        check_times(starts_at, ends_at)
        if key is not None and not 0 < len(key) <= MAX_KEY:
            raise InvalidBody(f"a meeting key must be 1 to {MAX_KEY} characters")
        if key is not None:
            found = await self._claimed(host, key)
            if found is not None:
                return found, False
        name = provider or self.default_provider
        maker = self.providers.get(name)
        if maker is None:
            raise InvalidBody(f"no meeting provider named {name!r} on this deployment")
        meeting_id = self._id_for(host, key)
        order = MeetingOrder(meeting_id, host, title, starts_at, ends_at, workspace, account)
        url = await maker.create(order)  # ProviderFailed: nothing was written
        meeting = Meeting(
            meeting_id,
            host,
            title,
            starts_at,
            ends_at,
            url,
            name,
            created_ms=now_ms(),
            booking=booking,
        )
        await self.batch.call("SET", _index_key(meeting_id), host)
        score = starts_at if starts_at is not None else meeting.created_ms
        keys_ = [_claim_key(host, key or meeting_id), _meeting_key(host, meeting_id)]
        claim = f"{meeting_id}\n{secrets.token_hex(8)}"  # this call's own
        args = ["1" if key else "0", claim, pack(asdict(meeting)), score, meeting_id]
        claimed = text(await self.batch.script("claim", [*keys_, _list_key(host)], args))
        if claimed != claim:  # another call made the key's meeting first
            claimed_id = claimed.split("\n")[0]
            if claimed_id != meeting_id:
                await self.batch.call("DEL", _index_key(meeting_id))
            earlier = await self.find_for(host, claimed_id)
            if earlier is None:
                raise InternalError()
            return earlier, False
        await self.events.emit("meeting.created", meeting.view(""))
        return meeting, True

    async def by_key(self, host: str, key: str) -> Meeting | None:
        """The meeting made for ``key`` before, if any (calendar sync finds the
        meeting of an event another process rewrote)."""
        return await self._claimed(host, key)

    async def _claimed(self, host: str, key: str) -> Meeting | None:
        found = text(await self.batch.call("GET", _claim_key(host, key)))
        return await self.find_for(host, found.split("\n")[0]) if found else None

    async def find_for(self, host: str, meeting_id: str) -> Meeting | None:
        """The host's meeting with this id, or None."""
        raw = await self.batch.call("GET", _meeting_key(host, meeting_id))
        return _decode(raw) if raw else None

    async def get(self, meeting_id: str) -> Meeting:
        if not is_meeting_id(meeting_id):
            raise UnknownMeeting("no such meeting")
        host = text(await self.batch.call("GET", _index_key(meeting_id)))
        found = await self.find_for(host, meeting_id) if host else None
        if found is None:
            raise UnknownMeeting("no such meeting")
        return found

    async def for_host(self, host: str, limit: int = 1000) -> list[Meeting]:
        """The host's meetings, by start time (a Meet Now one by creation)."""
        ids = await self.batch.call("ZRANGE", _list_key(host), 0, limit - 1)
        if not ids:
            return []
        raws = await self.batch.call("MGET", *[_meeting_key(host, text(i)) for i in ids])
        return [_decode(raw) for raw in raws if raw]

    async def reschedule(
        self, meeting: Meeting, starts_at: int, ends_at: int, title: str | None = None
    ) -> Meeting:
        check_times(starts_at, ends_at)
        return await self._change(
            meeting,
            lambda m: replace(
                m,
                starts_at=starts_at,
                ends_at=ends_at,
                title=title or m.title,
                sequence=m.sequence + 1,
            ),
            "meeting.updated",
        )

    async def cancel(self, meeting: Meeting) -> Meeting:
        return await self._change(
            meeting,
            lambda m: m if m.cancelled else replace(m, status=CANCELLED, sequence=m.sequence + 1),
            "meeting.cancelled",
        )

    async def _change(
        self, meeting: Meeting, change: Callable[[Meeting], Meeting], kind: str
    ) -> Meeting:
        key = _meeting_key(meeting.host, meeting.id)
        for _ in range(CAS_ATTEMPTS):
            raw = await self.batch.call("GET", key)
            if not raw:
                raise UnknownMeeting("no such meeting")
            before = _decode(raw)
            after: Meeting = change(before)
            if after == before:
                return before
            if int(await self.batch.script("swap", [key], [raw, pack(asdict(after))])):
                if after.starts_at is not None and after.starts_at != before.starts_at:
                    await self.batch.call("ZADD", _list_key(after.host), after.starts_at, after.id)
                await self.events.emit(kind, after.view(""))
                return after
        raise InternalError("the meeting kept changing; try again")

    async def knock_options(self, host: str, meeting_id: str) -> dict[str, Any] | None:
        """What a guest knocking through the meeting's join link carries (the
        host's guest card shows it; ``MeetingProvider.personal`` sends the
        admitted guest to ``url``), or None for no such meeting, or a cancelled one."""
        if not is_meeting_id(meeting_id):
            return None
        meeting = await self.find_for(host, meeting_id)
        if meeting is None or meeting.cancelled:
            return None
        options: dict[str, Any] = {
            "title": meeting.title,
            "meeting": meeting.id,
            "url": meeting.url,
        }
        if meeting.starts_at is not None and meeting.ends_at is not None:
            options["duration"] = max(
                1, min(24 * 60, (meeting.ends_at - meeting.starts_at) // 60_000)
            )
            options["when"] = when_text(meeting.starts_at, meeting.ends_at)
        return options
