"""Every booking rule against the real store (issue 13, point 3): connect ->
book -> link; booked before the connection -> none; after a disconnect ->
none; one account in two workspaces; two users independent; only the video
location gets a link; a reschedule keeps the link; a cancel cancels the
meeting; an Idempotency-Key answers the same booking, or refuses another body."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.crc import key_slot

from protocol.errors import BookingCancelled, IdempotencyKeyReused, InvalidBody, UnknownBooking
from server.meetings import bookings as booking_keys
from server.meetings import planned as meeting_keys
from server.meetings.bookings import BookingRequest
from tests.server.meetings.conftest import TEMPLATE, Planned

START = 1_893_456_000_000  # 2030-01-01 00:00 UTC
HOUR = 3_600_000


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _request(host: str, *, location: str = "video", title: str = "Intro call") -> BookingRequest:
    return BookingRequest(
        host=host,
        title=title,
        starts_at=START,
        ends_at=START + HOUR,
        attendees=("guest@example.org",),
        location=location,
    )


async def test_connect_then_book_gives_a_fresh_unique_link(planned: Planned) -> None:
    ws, ada = _id("ws"), _id("ada")
    await planned.connections.connect(ws, ada, "template", "ada@video")
    first, made = await planned.bookings.create(ws, _request(ada))
    second, _ = await planned.bookings.create(ws, _request(ada))
    assert made and first.meeting and second.meeting and first.meeting != second.meeting
    assert first.url == TEMPLATE.replace("{meeting_id}", first.meeting)
    meeting = await planned.meetings.get(first.meeting)
    assert (meeting.host, meeting.title, meeting.starts_at, meeting.ends_at) == (
        ada,
        "Intro call",
        START,
        START + HOUR,
    )
    assert meeting.booking == f"{ws}/{first.id}"
    assert await planned.bookings.get(ws, first.id) == first


async def test_bookings_before_the_connection_stay_without_a_link(planned: Planned) -> None:
    ws, ada = _id("ws"), _id("ada")
    before, _ = await planned.bookings.create(ws, _request(ada))
    assert before.meeting is None and before.url is None
    await planned.connections.connect(ws, ada, "template", "ada@video")
    after, _ = await planned.bookings.create(ws, _request(ada))
    assert after.meeting is not None
    assert (await planned.bookings.get(ws, before.id)).meeting is None  # not changed


async def test_after_a_disconnect_new_bookings_get_no_link_until_a_reconnect(
    planned: Planned,
) -> None:
    ws, ada = _id("ws"), _id("ada")
    await planned.connections.connect(ws, ada, "template", "ada@video")
    linked, _ = await planned.bookings.create(ws, _request(ada))
    assert await planned.connections.disconnect(ws, ada)
    bare, _ = await planned.bookings.create(ws, _request(ada))
    assert linked.meeting is not None and bare.meeting is None
    assert (await planned.bookings.get(ws, linked.id)).meeting == linked.meeting  # kept
    await planned.connections.connect(ws, ada, "foyer", "ada@foyer")
    again, _ = await planned.bookings.create(ws, _request(ada))
    assert again.meeting is not None


async def test_one_account_serves_two_workspaces(planned: Planned) -> None:
    ws1, ws2, ada = _id("ws"), _id("ws"), _id("ada")
    await planned.connections.connect(ws1, ada, "template", "shared@video")
    await planned.connections.connect(ws2, ada, "template", "shared@video")
    one, _ = await planned.bookings.create(ws1, _request(ada))
    two, _ = await planned.bookings.create(ws2, _request(ada))
    assert one.meeting and two.meeting and one.meeting != two.meeting
    await planned.connections.disconnect(ws1, ada)  # only that workspace
    three, _ = await planned.bookings.create(ws2, _request(ada))
    none, _ = await planned.bookings.create(ws1, _request(ada))
    assert three.meeting is not None and none.meeting is None


async def test_two_users_connect_independently(planned: Planned) -> None:
    ws, ada, bob = _id("ws"), _id("ada"), _id("bob")
    await planned.connections.connect(ws, ada, "template", "ada@video")
    for_ada, _ = await planned.bookings.create(ws, _request(ada))
    for_bob, _ = await planned.bookings.create(ws, _request(bob))
    assert for_ada.meeting is not None and for_bob.meeting is None


@pytest.mark.parametrize("location", ["221B Baker Street, London", "+44 20 7946 0000", "phone"])
async def test_only_the_video_location_gets_a_link(planned: Planned, location: str) -> None:
    ws, ada = _id("ws"), _id("ada")
    await planned.connections.connect(ws, ada, "template", "ada@video")
    booking, _ = await planned.bookings.create(ws, _request(ada, location=location))
    assert booking.meeting is None and booking.location == location
    video, _ = await planned.bookings.create(ws, _request(ada, location="Video"))
    assert video.meeting is not None


async def test_a_reschedule_keeps_the_link_and_bumps_the_sequence(planned: Planned) -> None:
    ws, ada = _id("ws"), _id("ada")
    await planned.connections.connect(ws, ada, "template", "ada@video")
    booking, _ = await planned.bookings.create(ws, _request(ada))
    moved = await planned.bookings.reschedule(ws, booking.id, START + 2 * HOUR, START + 3 * HOUR)
    assert (moved.meeting, moved.url) == (booking.meeting, booking.url)
    assert (moved.starts_at, moved.sequence) == (START + 2 * HOUR, booking.sequence + 1)
    assert await planned.bookings.get(ws, booking.id) == moved
    assert moved.meeting is not None
    meeting = await planned.meetings.get(moved.meeting)
    assert (meeting.starts_at, meeting.ends_at) == (START + 2 * HOUR, START + 3 * HOUR)
    same = await planned.bookings.reschedule(ws, booking.id, START + 2 * HOUR, START + 3 * HOUR)
    assert same.sequence == moved.sequence  # nothing changed: no new sequence
    with pytest.raises(InvalidBody, match="ends_at must be after starts_at"):
        await planned.bookings.reschedule(ws, booking.id, START, START)
    assert await planned.bookings.get(ws, booking.id) == moved


async def test_a_cancel_cancels_the_meeting_and_the_booking_stays_cancelled(
    planned: Planned,
) -> None:
    ws, ada = _id("ws"), _id("ada")
    await planned.connections.connect(ws, ada, "template", "ada@video")
    booking, _ = await planned.bookings.create(ws, _request(ada))
    cancelled = await planned.bookings.cancel(ws, booking.id)
    assert cancelled.cancelled and cancelled.sequence == booking.sequence + 1
    assert booking.meeting is not None
    assert (await planned.meetings.get(booking.meeting)).cancelled
    assert await planned.meetings.knock_options(ada, booking.meeting) is None
    again = await planned.bookings.cancel(ws, booking.id)
    assert again == cancelled  # cancelling twice changes nothing
    with pytest.raises(BookingCancelled):
        await planned.bookings.reschedule(ws, booking.id, START, START + HOUR)
    kinds = [k for k, d in planned.events.seen if d.get("id") in (booking.id, booking.meeting)]
    assert kinds == ["meeting.created", "booking.created", "meeting.cancelled", "booking.cancelled"]


async def test_an_idempotency_key_answers_the_same_booking(planned: Planned) -> None:
    ws, ada = _id("ws"), _id("ada")
    await planned.connections.connect(ws, ada, "template", "ada@video")
    first, made = await planned.bookings.create(ws, _request(ada), "key-1")
    again, made_again = await planned.bookings.create(ws, _request(ada), "key-1")
    assert made and not made_again and again == first
    with pytest.raises(IdempotencyKeyReused, match="different body"):
        await planned.bookings.create(ws, _request(ada, title="Other"), "key-1")
    other, _ = await planned.bookings.create(ws, _request(ada), "key-2")
    assert other.id != first.id and other.meeting != first.meeting
    assert await planned.bookings.get(ws, first.id) == first


async def test_concurrent_calls_with_one_key_make_one_booking_and_one_meeting(
    planned: Planned,
) -> None:
    ws, ada = _id("ws"), _id("ada")
    await planned.connections.connect(ws, ada, "template", "ada@video")
    results = await asyncio.gather(
        *[planned.bookings.create(ws, _request(ada), "same") for _ in range(8)]
    )
    assert len({b for b, _ in results}) == 1
    assert sum(made for _, made in results) == 1
    assert len(await planned.meetings.for_host(ada)) == 1


async def test_unknown_booking(planned: Planned) -> None:
    with pytest.raises(UnknownBooking):
        await planned.bookings.get(_id("ws"), "b0")


def test_every_script_call_keeps_its_keys_on_one_cluster_slot() -> None:
    """claim.lua and swap.lua get keys of one hash tag (Redis Cluster)."""
    host, ws = "ada", "acme"
    by_host = [
        meeting_keys._claim_key(host, "booking:x"),
        meeting_keys._meeting_key(host, "m" + "0" * 20),
        meeting_keys._list_key(host),
        booking_keys._host_list_key(host),
    ]
    by_workspace = [
        booking_keys._claim_key(ws, "k"),
        booking_keys._booking_key(ws, "b1"),
        booking_keys._list_key(ws),
    ]
    for group in (by_host, by_workspace):
        assert len({key_slot(k.encode()) for k in group}) == 1, group
