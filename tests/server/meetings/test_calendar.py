"""The calendar rewrite on files as Google Calendar, Outlook and Apple
Calendar export them (tests/server/meetings/ics/), and on single JSON events:
one-off events get their own meeting link in place of the personal link,
recurring ones keep it, and nothing else in the file changes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import InvalidCalendar
from server.meetings.calendar import (
    MAX_EVENTS,
    MAX_ICS_BYTES,
    DedicatedLink,
    EventOutcome,
    PersonalLinks,
    PlannedEvent,
    event_key,
    rewrite_event,
    rewrite_ics,
)
from server.meetings.ical import FOLD_OCTETS, read, unescape_text

ICS = Path(__file__).parent / "ics"
LINKS = PersonalLinks(bases=("https://foyer.example",), slugs=("ada", "ada-lovelace"))


class Maker:
    """An in-memory meeting maker that, like the store, gives one meeting per key."""

    def __init__(self) -> None:
        self.meetings: dict[str, DedicatedLink] = {}
        self.calls: list[PlannedEvent] = []

    async def __call__(self, event: PlannedEvent) -> DedicatedLink:
        self.calls.append(event)
        if event.key not in self.meetings:
            meeting_id = f"mt{len(self.meetings) + 1}"
            self.meetings[event.key] = DedicatedLink(
                meeting_id, f"https://foyer.example/m/{meeting_id}"
            )
        return self.meetings[event.key]


def changed(before: bytes, after: bytes) -> list[str]:
    """The names of the content lines that differ (the files must keep their line count)."""
    old, new = read(before).lines, read(after).lines
    assert len(old) == len(new)
    return [b.name for a, b in zip(old, new, strict=True) if a.raw != b.raw]


def values(data: bytes, name: str) -> list[str]:
    return [line.value for line in read(data).lines if line.name == name]


def calendar(*events: str, head: str = "", newline: str = "\r\n") -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Test//EN"]
    if head:
        lines.append(head)
    for event in events:
        lines += ["BEGIN:VEVENT", *event.strip().splitlines(), "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return (newline.join(lines) + newline).encode()


def event(uid: str, *props: str) -> str:
    return "\n".join([f"UID:{uid}", "DTSTAMP:20261130T120000Z", *props])


# -- Google Calendar ---------------------------------------------------------


async def test_google_export() -> None:
    data = (ICS / "google.ics").read_bytes()
    maker = Maker()
    result = await rewrite_ics(data, LINKS, maker)

    assert result.events == (
        EventOutcome("1q2w3e4r5t6y7u8i9o0pasdfgh@google.com", None, "rewritten", "mt1"),
        EventOutcome("weekly0standup0series0abc@google.com", None, "kept_recurring", None),
        EventOutcome(
            "weekly0standup0series0abc@google.com", "20261215T090000", "kept_recurring", None
        ),
        EventOutcome("weekly0standup0series0abc@google.com", "20261222T090000", "cancelled", None),
        EventOutcome("allday0holiday0xyz@google.com", None, "no_link", None),
        EventOutcome("retired0slug0event0qwe@google.com", None, "rewritten", "mt2"),
    )
    # Only the properties that held the link changed; the VTIMEZONE, the
    # alarm, the series and every other line are the same bytes.
    assert changed(data, result.ics) == [
        "X-GOOGLE-CONFERENCE",
        "DESCRIPTION",
        "DESCRIPTION",
        "LOCATION",
    ]
    conferences = values(result.ics, "X-GOOGLE-CONFERENCE")
    assert conferences == ["https://foyer.example/m/mt1"] + ["https://foyer.example/l/ada"] * 3
    description = unescape_text(values(result.ics, "DESCRIPTION")[0])[0]
    assert "Join with Foyer: https://foyer.example/m/mt1\n" in description
    assert "Learn more about Foyer: https://foyer.example/help\n" in description
    assert description.startswith("Let's go through the Q3 numbers, then pricing.")
    assert values(result.ics, "LOCATION")[-1] == "https://foyer.example/m/mt2"
    retired = unescape_text(values(result.ics, "DESCRIPTION")[-1])[0]
    assert retired == "Follow-up (old link): https://foyer.example/m/mt2."

    first, retired_event = maker.calls
    assert first == PlannedEvent(
        key="1q2w3e4r5t6y7u8i9o0pasdfgh@google.com|",
        uid="1q2w3e4r5t6y7u8i9o0pasdfgh@google.com",
        recurrence_id=None,
        slug="ada",
        title="Pricingreview",  # the link's ?title=, cleaned by protocol.links
        starts_at=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),  # 10:00 in Berlin
        ends_at=datetime(2026, 12, 7, 9, 45, tzinfo=UTC),
        options={"title": "Pricingreview", "duration": 45},
    )
    assert retired_event.slug == "ada-lovelace"
    assert retired_event.title == "Follow-up with Grace"  # SUMMARY: no ?title=
    assert retired_event.options == {}


async def test_rewritten_lines_are_folded_at_75_octets() -> None:
    for name in ("google", "outlook", "apple"):
        data = (ICS / f"{name}.ics").read_bytes()
        result = await rewrite_ics(data, LINKS, Maker())
        for line in read(result.ics).lines:
            for physical in line.raw.split(b"\r\n"):
                assert len(physical) <= FOLD_OCTETS, (name, physical)
                assert not physical.endswith(b"\n")  # the file's CRLF kept


# -- Outlook -----------------------------------------------------------------


async def test_outlook_export() -> None:
    data = (ICS / "outlook.ics").read_bytes()
    maker = Maker()
    result = await rewrite_ics(data, LINKS, maker)

    assert [e.action for e in result.events] == ["rewritten", "kept_recurring", "rewritten"]
    assert changed(data, result.ics) == ["DESCRIPTION", "LOCATION", "X-ALT-DESC", "LOCATION"]
    html = unescape_text(values(result.ics, "X-ALT-DESC")[0])[0]
    assert (
        '<A HREF="https://foyer.example/m/mt1"><SPAN LANG="de-de">'
        "https://foyer.example/m/mt1</SPAN></A>"
    ) in html
    assert "ada-lovelace" not in html
    # The rest of the HTML kept its escapes as Outlook wrote them.
    alt = values(result.ics, "X-ALT-DESC")[0]
    assert r"contract\, renewal\; pricing</SPAN></LI>\n<LI><SPAN LANG=" in alt
    text = values(result.ics, "DESCRIPTION")[0]
    assert text == (
        r"Join the meeting: https://foyer.example/m/mt1 \n\nAgenda:\n- contract\, renewal\;"
        r" pricing\n- Q&A\n"
    )
    one_off, bangalore = maker.calls
    assert one_off.options == {"title": "Vertrag", "duration": 60}  # &amp; in the HTML too
    assert one_off.starts_at == datetime(2026, 12, 8, 13, 0, tzinfo=UTC)  # Windows zone name
    assert one_off.ends_at == datetime(2026, 12, 8, 14, 0, tzinfo=UTC)
    # "Customized Time Zone" exists only in the file's VTIMEZONE (+05:30).
    assert bangalore.starts_at == datetime(2026, 12, 11, 6, 0, tzinfo=UTC)
    assert bangalore.title == "Team sync (Bangalore)"
    # Non-ASCII lines that were not rewritten are the same bytes.
    assert "SUMMARY;LANGUAGE=de-de:Vertragsverlängerung mit Müller & Söhne".encode() in result.ics


# -- Apple Calendar ----------------------------------------------------------


async def test_apple_export() -> None:
    data = (ICS / "apple.ics").read_bytes()
    maker = Maker()
    result = await rewrite_ics(data, LINKS, maker)

    assert [e.action for e in result.events] == ["rewritten", "no_link"]  # /l/adam is not ours
    assert changed(data, result.ics) == ["LOCATION", "URL", "X-APPLE-STRUCTURED-LOCATION"]
    assert values(result.ics, "URL") == ["https://foyer.example/m/mt1"]
    structured = next(
        line for line in read(result.ics).lines if line.name == "X-APPLE-STRUCTURED-LOCATION"
    )
    assert structured.param("X-TITLE") == "https://foyer.example/m/mt1"
    assert structured.value == "geo:0,0"
    (planned,) = maker.calls
    assert planned.slug == "ada"  # http, a host in capitals and a trailing slash
    assert planned.title == "Intro call \u2013 Café Größe"
    assert planned.starts_at == datetime(2026, 12, 9, 16, 30, tzinfo=UTC)


# -- idempotence ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["google", "outlook", "apple"])
async def test_rewriting_twice_gives_the_same_meetings(name: str) -> None:
    data = (ICS / f"{name}.ics").read_bytes()
    maker = Maker()
    first = await rewrite_ics(data, LINKS, maker)
    second = await rewrite_ics(data, LINKS, maker)
    assert second == first
    rewritten = [e for e in first.events if e.action == "rewritten"]
    assert len(maker.meetings) == len(rewritten) >= 1
    assert {c.key for c in maker.calls} == {event_key(e.uid, e.recurrence_id) for e in rewritten}
    # The output holds no personal link any more: a third pass changes nothing.
    third = await rewrite_ics(first.ics, LINKS, maker)
    assert third.ics == first.ics
    assert "rewritten" not in {e.action for e in third.events}


async def test_one_event_twice_in_a_file_asks_once() -> None:
    one = event("dup@x", "DTSTART:20261207T100000Z", "LOCATION:https://foyer.example/l/ada")
    maker = Maker()
    result = await rewrite_ics(calendar(one, one), LINKS, maker)
    assert [e.meeting_id for e in result.events] == ["mt1", "mt1"]
    assert len(maker.calls) == 1


def test_the_key_is_uid_and_recurrence_id() -> None:
    assert event_key("abc", None) == "abc|"
    assert event_key("abc", "20261215T090000") == "abc|20261215T090000"


# -- what counts as recurring, cancelled, a link ---------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ["RRULE:FREQ=WEEKLY;COUNT=4"],
        ["RDATE:20261214T100000Z,20261221T100000Z"],
        ["RECURRENCE-ID:20261207T100000Z"],  # an instance whose master is not in the file
    ],
)
async def test_recurring_events_keep_the_personal_link(extra: list[str]) -> None:
    data = calendar(
        event("r@x", "DTSTART:20261207T100000Z", "LOCATION:https://foyer.example/l/ada", *extra)
    )
    maker = Maker()
    result = await rewrite_ics(data, LINKS, maker)
    assert result.ics == data
    assert result.events[0].action == "kept_recurring"
    assert maker.calls == []


async def test_an_edited_occurrence_before_its_series_is_still_recurring() -> None:
    occurrence = event(
        "s@x", "DTSTART:20261215T100000Z", "LOCATION:https://foyer.example/l/ada"
    )  # no RECURRENCE-ID of its own, but its UID is a series'
    series = event("s@x", "DTSTART:20261208T100000Z", "RRULE:FREQ=WEEKLY")
    data = calendar(occurrence, series)
    result = await rewrite_ics(data, LINKS, Maker())
    assert [e.action for e in result.events] == ["kept_recurring", "no_link"]
    assert result.ics == data


async def test_cancelled_events_and_cancel_files_are_left_alone() -> None:
    linked = event("c@x", "DTSTART:20261207T100000Z", "LOCATION:https://foyer.example/l/ada")
    maker = Maker()
    cancelled = calendar(linked + "\nSTATUS:CANCELLED")
    result = await rewrite_ics(cancelled, LINKS, maker)
    assert result.ics == cancelled and result.events[0].action == "cancelled"
    method = calendar(
        linked, event("d@x", "LOCATION:https://foyer.example/l/ada"), head="METHOD:CANCEL"
    )
    result = await rewrite_ics(method, LINKS, maker)
    assert result.ics == method
    assert [e.action for e in result.events] == ["cancelled", "cancelled"]
    assert maker.calls == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("https://foyer.example/l/ada", "https://foyer.example/l/ada"),
        ("http://foyer.example/l/ada/", "http://foyer.example/l/ada/"),
        ("HTTPS://FOYER.EXAMPLE/l/Ada", "HTTPS://FOYER.EXAMPLE/l/Ada"),
        ("Join: https://foyer.example/l/ada.", "https://foyer.example/l/ada"),
        ("(see https://foyer.example/l/ada)", "https://foyer.example/l/ada"),
        (
            "at https://foyer.example/l/ada?duration=45, ok",
            "https://foyer.example/l/ada?duration=45",
        ),
        ("https://foyer.example/l/ada/?title=x#top", "https://foyer.example/l/ada/?title=x#top"),
        ("https://foyer.example/l/adam", None),
        ("https://foyer.example/l/ada-x", None),
        ("https://foyer.example/l/ada/more", None),
        ("https://foyer.example/l/ada.evil", None),
        ("https://foyer.example/ada", None),
        ("https://other.example/l/ada", None),
        ("https://foyer.example.evil.test/l/ada", None),
        ("https://xfoyer.example/l/ada", None),
    ],
)
def test_what_is_the_personal_link(text: str, found: str | None) -> None:
    matches = [text[start:end] for start, end, _slug, _query in LINKS.find(text)]
    assert matches == ([found] if found else [])


def test_a_base_with_a_path() -> None:
    links = PersonalLinks(bases=("https://example.com/foyer/",), slugs=("ada",))
    assert [m[2] for m in links.find("https://example.com/foyer/l/ada")] == ["ada"]
    assert list(links.find("https://example.com/l/ada")) == []


def test_personal_links_need_a_base_and_a_slug() -> None:
    with pytest.raises(ValueError, match="base"):
        PersonalLinks(bases=(), slugs=("ada",))
    with pytest.raises(ValueError, match="http"):
        PersonalLinks(bases=("foyer.example",), slugs=("ada",))


async def test_options_are_sanitised_and_the_first_link_wins() -> None:
    data = calendar(
        event(
            "o@x",
            "SUMMARY:Budget",
            "LOCATION:https://foyer.example/l/ada?duration=20&region=EU-WEST&utm_source=x",
            r"DESCRIPTION:https://foyer.example/l/ada-lovelace?duration=90&recording=disabled\, ok",
        )
    )
    maker = Maker()
    result = await rewrite_ics(data, LINKS, maker)
    (planned,) = maker.calls
    assert planned.slug == "ada"
    assert planned.options == {"duration": 20, "region": "eu-west", "recording": "disabled"}
    assert planned.title == "Budget"
    assert values(result.ics, "DESCRIPTION") == [r"https://foyer.example/m/mt1\, ok"]


async def test_times() -> None:
    maker = Maker()
    data = calendar(
        event("floating@x", "DTSTART:20261207T100000", "LOCATION:https://foyer.example/l/ada"),
        event(
            "duration@x",
            "DTSTART;TZID=Europe/Paris:20261207T100000",
            "DURATION:PT1H30M",
            "LOCATION:https://foyer.example/l/ada",
        ),
        event(
            "unknown@x",
            "DTSTART;TZID=Atlantis/Capital:20261207T100000",
            "LOCATION:https://foyer.example/l/ada",
        ),
        event("allday@x", "DTSTART;VALUE=DATE:20261207", "LOCATION:https://foyer.example/l/ada"),
    )
    await rewrite_ics(data, LINKS, maker)
    times = {c.uid: (c.starts_at, c.ends_at) for c in maker.calls}
    assert times == {
        "floating@x": (None, None),
        "duration@x": (
            datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
            datetime(2026, 12, 7, 10, 30, tzinfo=UTC),
        ),
        "unknown@x": (None, None),
        "allday@x": (None, None),
    }


async def test_a_file_with_lf_keeps_lf_in_rewritten_lines() -> None:
    long_location = "LOCATION:Room 4 or online at https://foyer.example/l/ada?title=" + "a" * 80
    data = calendar(event("lf@x", long_location), newline="\n")
    result = await rewrite_ics(data, LINKS, Maker())
    assert b"\r" not in result.ics
    assert values(result.ics, "LOCATION") == ["Room 4 or online at https://foyer.example/m/mt1"]
    unchanged = data.replace(long_location.encode(), b"")
    assert result.ics.replace(b"LOCATION:Room 4 or online at https://foyer.example/m/mt1", b"") == (
        unchanged
    )


async def test_a_rewritten_last_line_without_a_break_keeps_none() -> None:
    data = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:e@x\r\nURL:https://foyer.example/l/ada\r\nEND:VEVENT\r\nEND:VCALENDAR"
    result = await rewrite_ics(data, LINKS, Maker())
    assert result.ics == data.replace(b"/l/ada", b"/m/mt1")


# -- bad input ----------------------------------------------------------------


async def test_too_big() -> None:
    data = calendar(event("big@x", "DESCRIPTION:" + "x" * MAX_ICS_BYTES))
    with pytest.raises(InvalidCalendar, match="larger than 1024 KiB"):
        await rewrite_ics(data, LINKS, Maker())


async def test_too_many_events() -> None:
    maker = Maker()
    linked = [event(f"e{i}@x", "URL:https://foyer.example/l/ada") for i in range(MAX_EVENTS)]
    result = await rewrite_ics(calendar(*linked), LINKS, maker)
    assert len(result.events) == len(maker.meetings) == MAX_EVENTS
    with pytest.raises(InvalidCalendar, match=f"more than {MAX_EVENTS} events"):
        await rewrite_ics(calendar(*linked, event("one-more@x")), LINKS, Maker())


async def test_not_icalendar() -> None:
    with pytest.raises(InvalidCalendar, match="not iCalendar"):
        await rewrite_ics(b'{"uid": "x"}', LINKS, Maker())


async def test_an_event_with_the_link_needs_a_uid() -> None:
    data = calendar("DTSTART:20261207T100000Z\nLOCATION:https://foyer.example/l/ada")
    with pytest.raises(InvalidCalendar, match="line 4: an event with the personal link has no UID"):
        await rewrite_ics(data, LINKS, Maker())
    without_link = calendar("DTSTART:20261207T100000Z\nLOCATION:Room 4")
    result = await rewrite_ics(without_link, LINKS, Maker())
    assert result.events == (EventOutcome("", None, "no_link", None),)


# -- one event as JSON ----------------------------------------------------------


async def test_a_json_event() -> None:
    given: dict[str, Any] = {
        "uid": "evt-1",
        "title": "Pricing",
        "starts_at": "2026-12-07T10:00:00+01:00",
        "ends_at": 1796636100000,  # 2026-12-07T09:35:00Z in milliseconds
        "location": "https://foyer.example/l/ada?duration=35",
        "description": "Join: https://foyer.example/l/ada?duration=35\nSee https://foyer.example/help",
        "url": None,
        "attendees": ["grace@partner.example"],
    }
    maker = Maker()
    out, outcome = await rewrite_event(given, LINKS, maker)
    assert outcome == EventOutcome("evt-1", None, "rewritten", "mt1")
    assert out == {
        **given,
        "location": "https://foyer.example/m/mt1",
        "description": "Join: https://foyer.example/m/mt1\nSee https://foyer.example/help",
    }
    (planned,) = maker.calls
    assert planned.key == "evt-1|"
    assert planned.title == "Pricing"
    assert planned.options == {"duration": 35}
    assert planned.starts_at == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert planned.ends_at == datetime(2026, 12, 7, 9, 35, tzinfo=UTC)
    again, outcome_again = await rewrite_event(given, LINKS, maker)
    assert (again, outcome_again) == (out, outcome)
    assert len(maker.meetings) == 1


@pytest.mark.parametrize(
    ("extra", "action"),
    [
        ({"recurring": True}, "kept_recurring"),
        ({"rrule": "FREQ=WEEKLY"}, "kept_recurring"),
        ({"recurrence_id": "20261207T100000Z"}, "kept_recurring"),
        ({"status": "cancelled"}, "cancelled"),
        ({"location": "https://foyer.example/l/adam"}, "no_link"),
    ],
)
async def test_json_events_that_keep_their_link(extra: dict[str, Any], action: str) -> None:
    given = {"uid": "evt-2", "location": "https://foyer.example/l/ada", **extra}
    maker = Maker()
    out, outcome = await rewrite_event(given, LINKS, maker)
    assert out == given
    assert outcome.action == action
    assert maker.calls == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "uid"),
        ({"uid": " "}, "uid"),
        ({"uid": 3}, "uid"),
        ({"uid": "u", "location": 5}, "location must be a string"),
        ({"uid": "u", "recurring": "yes"}, "recurring must be true or false"),
        ({"uid": "u", "starts_at": "next tuesday"}, "starts_at must be"),
        ({"uid": "u", "ends_at": True}, "ends_at must be"),
    ],
)
async def test_bad_json_events(given: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidCalendar, match=message):
        await rewrite_event(given, LINKS, Maker())
