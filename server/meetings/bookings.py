"""Bookings from a scheduling tool (docs/meetings.md, Bookings).

The rules: a booking whose location is the video option gets a fresh,
unique dedicated meeting at once, made through the provider of the account
its host has connected in the booking's workspace; with no connection (never
connected, or disconnected since) it gets none, and a booking made before
the connection keeps what it had. A reschedule keeps the booking's meeting
and link; a cancel cancels the meeting too (its join link then says so).

An ``Idempotency-Key`` makes a create safe to retry: the same key and the
same body answer the same booking; the same key with another body is
refused (``IdempotencyKeyReused``). The booking id and its meeting's key are
derived from the key and the body, so a retry after a failure half-way
(the meeting made, the booking not stored) makes no second meeting.

A booking is one msgpack value under the workspace's hash tag, written with
its idempotency claim by one script; the host's set of bookings (its
calendar feed) is under the host's tag.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from protocol.errors import (
    BookingCancelled,
    IdempotencyKeyReused,
    InternalError,
    InvalidBody,
    UnknownBooking,
)
from server.meetings.connections import Connections
from server.meetings.events import MeetingEvents
from server.meetings.planned import CANCELLED, SCHEDULED, Meeting, PlannedMeetings, join_link
from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, text, unpack

VIDEO = "video"  # the location that asks for a meeting link
CAS_ATTEMPTS = 50
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True, slots=True)
class BookingRequest:
    """What a scheduling tool sends; its fingerprint is the idempotency body."""

    host: str
    title: str
    starts_at: int  # ms since the Unix epoch, UTC
    ends_at: int
    attendees: tuple[str, ...] = ()
    location: str = VIDEO

    @property
    def wants_video(self) -> bool:
        return self.location.strip().lower() == VIDEO

    def fingerprint(self) -> str:
        body = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Booking:
    id: str
    workspace: str
    host: str
    title: str
    starts_at: int
    ends_at: int
    attendees: tuple[str, ...]
    location: str
    meeting: str | None  # the dedicated meeting's id, or None: no link
    url: str | None  # the meeting's URL (the provider's)
    status: str = SCHEDULED
    sequence: int = 0  # iCalendar SEQUENCE: bumped on reschedule and cancel
    created_ms: int = 0
    updated_ms: int = 0

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED

    def view(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "workspace": self.workspace,
            "host": self.host,
            "title": self.title,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "attendees": list(self.attendees),
            "location": self.location,
            "status": self.status,
            "sequence": self.sequence,
            "meeting_id": self.meeting,
            "meeting_url": self.url,
            "join_link": join_link(base_url, self.meeting) if self.meeting else None,
            "created_at": self.created_ms,
            "updated_at": self.updated_ms,
        }


def _decode(raw: bytes) -> Booking:
    data = unpack(raw)
    data["attendees"] = tuple(data.get("attendees") or ())
    return Booking(**data)


def workspace_tag(workspace: str) -> str:
    return f"foyer:{{w:{workspace}}}"


def _booking_key(workspace: str, booking_id: str) -> str:
    return f"{workspace_tag(workspace)}:booking:{booking_id}"


def _claim_key(workspace: str, idempotency_key: str) -> str:
    return f"{workspace_tag(workspace)}:idem:{idempotency_key}"


def _list_key(workspace: str) -> str:
    return f"{workspace_tag(workspace)}:bookings"


def _host_list_key(host: str) -> str:
    return f"{keys.tag(host)}:bookings"


def check_idempotency_key(value: str) -> str:
    if not 0 < len(value) <= MAX_IDEMPOTENCY_KEY or not value.isprintable():
        raise InvalidBody(
            f"the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        )
    return value


class Bookings:
    def __init__(
        self,
        batch: Batcher,
        connections: Connections,
        meetings: PlannedMeetings,
        events: MeetingEvents,
    ) -> None:
        self.batch = batch
        self.connections = connections
        self.meetings = meetings
        self.events = events

    async def create(
        self, workspace: str, request: BookingRequest, idempotency_key: str | None = None
    ) -> tuple[Booking, bool]:
        """The booking, and whether this call made it (False: an earlier call
        with the same key and body did)."""
        if request.ends_at <= request.starts_at:
            raise InvalidBody("ends_at must be after starts_at")
        fingerprint = request.fingerprint()
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
            earlier = await self._claimed(workspace, idempotency_key, fingerprint)
            if earlier is not None:
                await self._list_for_host(earlier)  # in case the first call stopped before it
                return earlier, False
            seed = f"{workspace}\n{idempotency_key}\n{fingerprint}"
            booking_id = "b" + hashlib.sha256(seed.encode()).hexdigest()[:20]
        else:
            booking_id = "b" + secrets.token_hex(10)
        meeting: Meeting | None = None
        if request.wants_video:
            connection = await self.connections.get(workspace, request.host)
            if connection is not None:
                meeting, _ = await self.meetings.create(
                    request.host,
                    request.title,
                    request.starts_at,
                    request.ends_at,
                    provider=connection.provider,
                    workspace=workspace,
                    account=connection.account,
                    key=f"booking:{workspace}:{booking_id}",
                    booking=f"{workspace}/{booking_id}",
                )
        now = now_ms()
        booking = Booking(
            id=booking_id,
            workspace=workspace,
            host=request.host,
            title=request.title,
            starts_at=request.starts_at,
            ends_at=request.ends_at,
            attendees=request.attendees,
            location=request.location,
            meeting=meeting.id if meeting else None,
            url=meeting.url if meeting else None,
            created_ms=now,
            updated_ms=now,
        )
        claim = f"{booking_id}\n{fingerprint}\n{secrets.token_hex(8)}"  # this call's own
        args = [
            "1" if idempotency_key else "0",
            claim,
            pack(asdict(booking)),
            booking.starts_at,
            booking_id,
        ]
        claim_key = _claim_key(workspace, idempotency_key or booking_id)
        key_list = [claim_key, _booking_key(workspace, booking_id), _list_key(workspace)]
        claimed = text(await self.batch.script("claim", key_list, args))
        if claimed != claim:  # a concurrent call with the same key won
            found = await self._claimed(workspace, str(idempotency_key), fingerprint)
            if found is None:
                raise InternalError()
            return found, False
        await self._list_for_host(booking)
        await self.events.emit("booking.created", booking.view(""))
        return booking, True

    async def _list_for_host(self, booking: Booking) -> None:
        """The host's calendar feed lists it (another slot than the booking's)."""
        member = f"{booking.workspace}\n{booking.id}"
        await self.batch.call("ZADD", _host_list_key(booking.host), booking.created_ms, member)

    async def _claimed(
        self, workspace: str, idempotency_key: str, fingerprint: str
    ) -> Booking | None:
        raw = text(await self.batch.call("GET", _claim_key(workspace, idempotency_key)))
        if not raw:
            return None
        booking_id, earlier, *_ = raw.split("\n")
        if earlier != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different body; use a new key"
            )
        return await self.get(workspace, booking_id)

    async def get(self, workspace: str, booking_id: str) -> Booking:
        raw = await self.batch.call("GET", _booking_key(workspace, booking_id))
        if not raw:
            raise UnknownBooking("no such booking in this workspace")
        return _decode(raw)

    async def for_host(self, host: str, limit: int = 1000) -> list[Booking]:
        members = await self.batch.call("ZRANGE", _host_list_key(host), 0, limit - 1)
        reads = []
        for member in members or ():
            workspace, _, booking_id = text(member).partition("\n")
            reads.append(self.batch.call("GET", _booking_key(workspace, booking_id)))
        found = [_decode(raw) for raw in await asyncio.gather(*reads) if raw]  # one pipeline
        return sorted(found, key=lambda b: b.starts_at)

    async def reschedule(
        self,
        workspace: str,
        booking_id: str,
        starts_at: int,
        ends_at: int,
        title: str | None = None,
    ) -> Booking:
        """New times (and title); the meeting and its link stay the same."""
        if ends_at <= starts_at:
            raise InvalidBody("ends_at must be after starts_at")

        def change(b: Booking) -> Booking:
            if b.cancelled:
                raise BookingCancelled("the booking was cancelled; make a new one")
            if (b.starts_at, b.ends_at, b.title) == (starts_at, ends_at, title or b.title):
                return b
            return replace(
                b,
                starts_at=starts_at,
                ends_at=ends_at,
                title=title or b.title,
                sequence=b.sequence + 1,
                updated_ms=now_ms(),
            )

        booking, changed = await self._change(workspace, booking_id, change)
        if changed:
            if booking.meeting:
                meeting = await self.meetings.find_for(booking.host, booking.meeting)
                if meeting is not None:
                    await self.meetings.reschedule(meeting, starts_at, ends_at, title)
            await self.events.emit("booking.updated", booking.view(""))
        return booking

    async def cancel(self, workspace: str, booking_id: str) -> Booking:
        """Cancel the booking and its meeting; cancelling again changes nothing."""

        def change(b: Booking) -> Booking:
            if b.cancelled:
                return b
            return replace(b, status=CANCELLED, sequence=b.sequence + 1, updated_ms=now_ms())

        booking, changed = await self._change(workspace, booking_id, change)
        if booking.meeting:  # also after a cancel whose meeting step failed: finish it
            meeting = await self.meetings.find_for(booking.host, booking.meeting)
            if meeting is not None:
                await self.meetings.cancel(meeting)
        if changed:
            await self.events.emit("booking.cancelled", booking.view(""))
        return booking

    async def _change(
        self, workspace: str, booking_id: str, change: Callable[[Booking], Booking]
    ) -> tuple[Booking, bool]:
        key = _booking_key(workspace, booking_id)
        for _ in range(CAS_ATTEMPTS):
            raw = await self.batch.call("GET", key)
            if not raw:
                raise UnknownBooking("no such booking in this workspace")
            before = _decode(raw)
            after = change(before)
            if after == before:
                return before, False
            if int(await self.batch.script("swap", [key], [raw, pack(asdict(after))])):
                return after, True
        raise InternalError("the booking kept changing; try again")
