"""iCalendar for bookings and meetings (RFC 5545, built with ``icalendar``):
a booking's invitation (iTIP ``METHOD:REQUEST``, or ``METHOD:CANCEL`` once
cancelled; ``SEQUENCE`` counts its changes) and a host's calendar feed.

The join link goes where every calendar finds it: ``LOCATION``,
``DESCRIPTION`` and the RFC 7986 ``CONFERENCE`` property.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from icalendar import Calendar, Event, vCalAddress, vUri

from server.meetings.bookings import Booking
from server.meetings.planned import Meeting, join_link

PRODID = "-//Foyer//Foyer meetings//EN"
UID_DOMAIN = "foyer"


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _calendar(method: str | None = None) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if method:
        cal.add("method", method)
    return cal


def _conference(event: Event, link: str) -> None:
    event.add("location", link)
    event.add("description", f"Join the meeting: {link}")
    event.add("url", link)
    params = {"VALUE": "URI", "FEATURE": "VIDEO", "LABEL": "Join the meeting"}
    event.add("conference", vUri(link), parameters=params)


def booking_event(booking: Booking, base_url: str, organizer: str | None = None) -> Event:
    event = Event()
    event.add("uid", f"{booking.id}@{UID_DOMAIN}")
    event.add("dtstamp", _time(booking.updated_ms or booking.created_ms))
    event.add("dtstart", _time(booking.starts_at))
    event.add("dtend", _time(booking.ends_at))
    event.add("summary", booking.title)
    event.add("sequence", booking.sequence)
    event.add("status", "CANCELLED" if booking.cancelled else "CONFIRMED")
    if booking.meeting:
        _conference(event, join_link(base_url, booking.meeting))
    elif booking.location:
        event.add("location", booking.location)
    if organizer:
        event.add("organizer", vCalAddress(f"mailto:{organizer}"))
    for email in booking.attendees:
        attendee = vCalAddress(f"mailto:{email}")
        attendee.params["ROLE"] = "REQ-PARTICIPANT"
        attendee.params["RSVP"] = "TRUE"
        event.add("attendee", attendee)
    return event


def invitation(booking: Booking, base_url: str, organizer: str | None = None) -> bytes:
    """The booking's invitation: ``REQUEST``, or ``CANCEL`` once cancelled."""
    cal = _calendar("CANCEL" if booking.cancelled else "REQUEST")
    cal.add_component(booking_event(booking, base_url, organizer))
    return bytes(cal.to_ical())


def meeting_event(meeting: Meeting, base_url: str) -> Event:
    assert meeting.starts_at is not None and meeting.ends_at is not None
    event = Event()
    event.add("uid", f"{meeting.id}@{UID_DOMAIN}")
    event.add("dtstamp", _time(meeting.created_ms))
    event.add("dtstart", _time(meeting.starts_at))
    event.add("dtend", _time(meeting.ends_at))
    event.add("summary", meeting.title)
    event.add("sequence", meeting.sequence)
    event.add("status", "CANCELLED" if meeting.cancelled else "CONFIRMED")
    _conference(event, join_link(base_url, meeting.id))
    return event


def feed(
    name: str, bookings: Iterable[Booking], meetings: Iterable[Meeting], base_url: str
) -> bytes:
    """A host's calendar (a subscription, so no ``METHOD``): its bookings and
    its dedicated meetings that have times (a booking's meeting is its booking)."""
    cal = _calendar()
    cal.add("x-wr-calname", f"{name} (Foyer)")
    for booking in bookings:
        cal.add_component(booking_event(booking, base_url))
    for meeting in meetings:
        if meeting.booking is None and meeting.starts_at is not None:
            cal.add_component(meeting_event(meeting, base_url))
    return bytes(cal.to_ical())
