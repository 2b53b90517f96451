"""Invitations and feeds as iCalendar (pure: no store, no event loop): the
join link in LOCATION, DESCRIPTION and RFC 7986 CONFERENCE; REQUEST, then
CANCEL; SEQUENCE; a booking without a link keeps its place as LOCATION."""

from __future__ import annotations

from dataclasses import replace

from icalendar import Calendar, Event

from server.meetings.bookings import Booking
from server.meetings.invitation import feed, invitation
from server.meetings.planned import Meeting

BASE = "https://foyer.example"
START = 1_893_488_400_000

BOOKED = Booking(
    id="b1",
    workspace="acme",
    host="ada",
    title="Intro call",
    starts_at=START,
    ends_at=START + 1_800_000,
    attendees=("ann@example.org", "bob@example.org"),
    location="video",
    meeting="m" + "1" * 20,
    url="https://video.example/1",
    created_ms=START - 10_000,
    updated_ms=START - 10_000,
)


def _event(data: bytes) -> tuple[Calendar, Event]:
    cal = Calendar.from_ical(data)
    (event,) = cal.walk("VEVENT")
    return cal, event


def test_the_invitation_carries_the_join_link_three_ways() -> None:
    cal, event = _event(invitation(BOOKED, BASE, "ada@example.org"))
    link = f"{BASE}/m/{BOOKED.meeting}"
    assert str(cal["METHOD"]) == "REQUEST" and str(event["STATUS"]) == "CONFIRMED"
    assert str(event["UID"]) == "b1@foyer" and int(event["SEQUENCE"]) == 0
    assert str(event["LOCATION"]) == link and link in str(event["DESCRIPTION"])
    conference = event["CONFERENCE"]
    assert str(conference) == link
    assert conference.params["VALUE"] == "URI" and conference.params["FEATURE"] == "VIDEO"
    assert str(event["ORGANIZER"]) == "mailto:ada@example.org"
    assert [str(a) for a in event["ATTENDEE"]] == [
        "mailto:ann@example.org",
        "mailto:bob@example.org",
    ]
    assert event.decoded("DTEND").timestamp() * 1000 == START + 1_800_000


def test_a_cancel_is_method_cancel_with_a_higher_sequence() -> None:
    gone = replace(BOOKED, status="cancelled", sequence=2)
    cal, event = _event(invitation(gone, BASE))
    assert str(cal["METHOD"]) == "CANCEL" and str(event["STATUS"]) == "CANCELLED"
    assert int(event["SEQUENCE"]) == 2 and str(event["UID"]) == "b1@foyer"
    assert "ORGANIZER" not in event  # none known


def test_a_booking_without_a_link_keeps_its_place() -> None:
    at_office = replace(BOOKED, location="221B Baker Street", meeting=None, url=None)
    _, event = _event(invitation(at_office, BASE))
    assert str(event["LOCATION"]) == "221B Baker Street"
    assert "CONFERENCE" not in event and "DESCRIPTION" not in event


def test_the_feed_lists_bookings_and_timed_meetings_once() -> None:
    timed = Meeting("m" + "2" * 20, "ada", "Review", START, START + 60_000, "u", "template")
    now = Meeting("m" + "3" * 20, "ada", "Now", None, None, "u", "template")
    booked = Meeting(BOOKED.meeting or "", "ada", "Intro call", START, START + 1, "u", "template",
                     booking="acme/b1")  # fmt: skip
    cal = Calendar.from_ical(feed("Ada", [BOOKED], [timed, now, booked], BASE))
    assert "METHOD" not in cal and str(cal["X-WR-CALNAME"]) == "Ada (Foyer)"
    uids = sorted(str(e["UID"]) for e in cal.walk("VEVENT"))
    assert uids == ["b1@foyer", f"{timed.id}@foyer"]
