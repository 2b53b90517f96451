"""The lossless content-line layer: every file reads back to its own bytes,
folded lines unfold (even inside a UTF-8 character), new lines fold at 75
octets, TEXT escapes round-trip, and what is not iCalendar is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import InvalidCalendar
from server.meetings.ical import (
    FOLD_OCTETS,
    escape_text,
    fold,
    read,
    unescape_text,
)

ICS = Path(__file__).parent / "ics"
FIXTURES = sorted(ICS.glob("*.ics"))


def test_there_are_fixtures() -> None:
    assert {p.stem for p in FIXTURES} >= {"google", "outlook", "apple"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_a_file_writes_back_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    assert read(data).write({}) == data


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_the_same_file_with_lf_and_no_final_break_writes_back(path: Path) -> None:
    data = path.read_bytes().replace(b"\r\n", b"\n").rstrip(b"\n")
    document = read(data)
    assert document.write({}) == data
    assert document.newline == b"\n"
    assert document.lines[-1].ending == b""


def test_google_folds_inside_a_utf8_character_and_it_still_unfolds() -> None:
    data = (ICS / "google.ics").read_bytes()
    physical = data.split(b"\r\n")
    split_inside = [
        line for line in physical if line[:1] == b" " and (line[1] & 0xC0) == 0x80
    ]  # a continuation line that begins with a UTF-8 continuation byte
    assert split_inside, "the fixture should fold inside a character, as Google does"
    document = read(data)
    summaries = [line.value for line in document.lines if line.name == "SUMMARY"]
    assert summaries[0] == (
        "Preisgesprächs \u2013 Zoë & Grüßen über die Übergangsregelung für Straßenbahnen 🎉"
    )


def test_components_and_parameters() -> None:
    document = read((ICS / "outlook.ics").read_bytes())
    (calendar,) = document.calendars
    assert [c.name for c in calendar.children] == ["VTIMEZONE"] * 2 + ["VEVENT"] * 3
    event = calendar.children[2]
    assert [c.name for c in event.children] == ["VALARM"]
    start = document.prop(event, "DTSTART")
    assert start is not None
    assert start.param("TZID") == "W. Europe Standard Time"
    assert start.value == "20261208T140000"
    alt = document.prop(event, "X-ALT-DESC")
    assert alt is not None and alt.param("FMTTYPE") == "text/html"
    assert alt.value.startswith('<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2//EN">\\n<HTML>')
    # The alarm's DESCRIPTION belongs to the alarm, not the event.
    assert document.prop(event.children[0], "DESCRIPTION") is not None
    descriptions = list(document.props(event, "DESCRIPTION"))
    assert len(descriptions) == 1 and descriptions[0].value.startswith("Join the meeting")


def test_quoted_parameter_values_may_hold_colons_and_semicolons() -> None:
    data = b'BEGIN:VCALENDAR\r\nX-A;X-T="a:b;c",plain;Y=1:value:with:colons\r\nEND:VCALENDAR\r\n'
    line = read(data).lines[1]
    assert line.name == "X-A"
    assert [p.name for p in line.params] == ["X-T", "Y"]
    assert [line.text[v.start : v.end] for v in line.params[0].values] == ["a:b;c", "plain"]
    assert line.params[0].values[0].quoted and not line.params[0].values[1].quoted
    assert line.value == "value:with:colons"


def test_a_byte_order_mark_is_kept_and_ignored() -> None:
    data = b"\xef\xbb\xbfBEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
    document = read(data)
    assert document.calendars[0].name == "VCALENDAR"
    assert document.write({}) == data


def test_bytes_that_are_not_utf8_survive() -> None:
    data = b"BEGIN:VCALENDAR\r\nX-LATIN1:caf\xe9\r\nEND:VCALENDAR\r\n"
    assert read(data).write({}) == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no BEGIN:VCALENDAR"),
        (b"hello world\r\n", "not iCalendar"),
        (b"<html><body>nope</body></html>", "not iCalendar"),
        (b"BEGIN:VEVENT\r\nEND:VEVENT\r\n", "must begin with BEGIN:VCALENDAR"),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n", "does not close BEGIN:VEVENT"),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n", "never closed"),
        (b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nX-MORE:1\r\n", "after END:VCALENDAR"),
        (b"BEGIN:VCALENDAR\r\nEND:VEVENT\r\n", "line 2"),
    ],
)
def test_what_is_not_icalendar_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidCalendar, match=message):
        read(data)


def test_fold_cuts_at_75_octets_and_never_inside_a_character() -> None:
    text = "DESCRIPTION:" + "é" * 100 + "🎉" * 30
    folded = fold(text, b"\r\n")
    parts = folded[:-2].split(b"\r\n")
    assert len(parts) > 1
    assert all(len(part) <= FOLD_OCTETS for part in parts)
    assert all(part.startswith(b" ") for part in parts[1:])
    for part in parts:
        (part[1:] if part.startswith(b" ") else part).decode("utf-8")  # each is whole UTF-8
    assert read(b"BEGIN:VCALENDAR\r\n" + folded + b"END:VCALENDAR\r\n").lines[1].text == text


def test_a_short_line_is_not_folded() -> None:
    assert fold("LOCATION:x", b"\n") == b"LOCATION:x\n"
    assert fold("LOCATION:x", b"") == b"LOCATION:x"


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")))
def test_fold_then_read_gives_the_text_back(value: str) -> None:
    text = "X-TEST:" + value
    for ending in (b"\r\n", b"\n"):
        data = b"BEGIN:VCALENDAR" + ending + fold(text, ending, ending) + b"END:VCALENDAR"
        lines = read(data).lines
        assert lines[1].text == text
        assert all(
            len(physical) <= FOLD_OCTETS for physical in lines[1].raw.split(ending) if physical
        )


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_escape_then_unescape_gives_the_text_back(text: str) -> None:
    text = text.replace("\r", "")
    escaped = escape_text(text)
    unescaped, where = unescape_text(escaped)
    assert unescaped == text
    assert len(where) == len(text) + 1 and where[-1] == len(escaped)
    assert all(escaped[where[i]] in (text[i], "\\") for i in range(len(text)))


def test_unescape_reads_every_escape() -> None:
    text, where = unescape_text(r"a\,b\;c\nd\Ne\\f")
    assert text == "a,b;c\nd\ne\\f"
    assert where[:4] == [0, 1, 3, 4]
