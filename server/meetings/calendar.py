"""The calendar rewrite: a one-off event that holds the host's personal link
gets a dedicated meeting link in its place; a recurring one keeps it
(DESIGN.md, Calendar; docs/meetings.md, Calendar rewrite).

The interface, all an HTTP endpoint needs::

    links = PersonalLinks(bases=("https://foyer.example",), slugs=("ada", "ada-lovelace"))
    result = await rewrite_ics(data, links, make)   # -> Rewrite(ics: bytes, events)
    event, outcome = await rewrite_event(obj, links, make)   # one event as JSON

``make`` is a ``MeetingMaker``: called with a ``PlannedEvent`` for each
one-off event that holds the link, it returns the ``DedicatedLink`` (meeting
id and join URL) to put in its place. It must give the same meeting for the
same ``PlannedEvent.key`` (``uid|recurrence_id``), so that rewriting an event
twice never makes a second meeting; within one call the engine asks once per
key. Every event gets an ``EventOutcome``: ``rewritten`` (with the meeting
id), ``kept_recurring``, ``no_link`` or ``cancelled``.

What counts:

- The personal link is ``{base}/l/{slug}`` for any base (``http`` or
  ``https``, any case in the host) and any of the host's slugs, current or
  retired, with or without a trailing slash, a query (link options, which
  carry over to the meeting: ``title``, ``duration``, ... sanitised by
  ``protocol.links``) and a fragment. ``/l/ada`` never matches ``/l/adam``.
  It is looked for in ``LINK_PROPERTIES`` (values and parameter values such
  as ``ALTREP`` or Apple's ``X-TITLE``); the first link found, in that order,
  names the slug, and options of earlier links win over later ones.
- Recurring: ``RRULE``, ``RDATE`` or ``RECURRENCE-ID``, or the ``UID`` of an
  event in the same file that has one (an edited occurrence of a series).
- Left alone: ``STATUS:CANCELLED`` events and every event of a
  ``METHOD:CANCEL`` calendar.

The output is the input with only the changed properties replaced (each
re-folded at 75 octets); everything else survives byte for byte. Bad input
raises ``InvalidCalendar``: not iCalendar, over ``MAX_ICS_BYTES``, more than
``MAX_EVENTS`` events, or an event with a link and no ``UID``.

No I/O but awaiting ``make``. May import: ``protocol``.
"""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Timezone
from icalendar.prop import vDDDTypes, vDuration
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from protocol.errors import InvalidCalendar
from protocol.links import DEFAULT_REGIONS, sanitise_options
from server.meetings.ical import (
    Component,
    ContentLine,
    Document,
    escape_text,
    fold,
    read,
    unescape_text,
)

MAX_ICS_BYTES = 1024 * 1024
MAX_EVENTS = 500

# Where calendar programs put a meeting link; the first found, in this order,
# names the slug. X-APPLE-STRUCTURED-LOCATION holds it in its X-TITLE.
LINK_PROPERTIES: tuple[str, ...] = (
    "LOCATION",
    "URL",
    "CONFERENCE",
    "X-GOOGLE-CONFERENCE",
    "X-APPLE-STRUCTURED-LOCATION",
    "DESCRIPTION",
    "X-ALT-DESC",
)
# Their values are URIs (no TEXT escapes) even without VALUE=URI.
_URI_PROPERTIES = frozenset({"URL", "CONFERENCE", "X-GOOGLE-CONFERENCE"})
_RECURRENCE = ("RRULE", "RDATE", "RECURRENCE-ID")
# What may follow a URL's path; sentence punctuation at its end is not part of it.
_TRAILING = ".,;:!?"

Action = Literal["rewritten", "kept_recurring", "no_link", "cancelled"]


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """What the maker needs to create (or find again) an event's meeting."""

    key: str  # stable: uid + "|" + (recurrence_id or "")
    uid: str
    recurrence_id: str | None
    slug: str  # which of the host's slugs matched (as given in PersonalLinks)
    title: str | None  # the link's ?title= option, else SUMMARY
    starts_at: datetime | None  # UTC; None for all-day, floating or unknown zones
    ends_at: datetime | None  # DTEND, or DTSTART + DURATION
    options: dict[str, Any]  # the link's options, sanitised (protocol.links)


@dataclass(frozen=True, slots=True)
class DedicatedLink:
    meeting_id: str
    join_link: str  # the URL that replaces the personal link


class MeetingMaker(Protocol):
    async def __call__(self, event: PlannedEvent, /) -> DedicatedLink: ...


@dataclass(frozen=True, slots=True)
class PersonalLinks:
    """How to recognise the host's personal link: ``{base}/l/{slug}``."""

    bases: tuple[str, ...]  # public base URLs, e.g. ("https://foyer.example",)
    slugs: tuple[str, ...]  # current and retired slugs
    regions: tuple[str, ...] = DEFAULT_REGIONS  # for sanitising ?region=
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    given: dict[str, str] = field(init=False, repr=False, compare=False)  # lower -> as given

    def __post_init__(self) -> None:
        hosts: list[str] = []
        for base in self.bases:
            parts = urlsplit(base.strip())
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                raise ValueError(f"not an http(s) base URL: {base!r}")
            hosts.append(re.escape(parts.netloc + parts.path.rstrip("/")))
        slugs = sorted({s.strip().lower() for s in self.slugs if s.strip()}, key=len, reverse=True)
        if not hosts or not slugs:
            raise ValueError("PersonalLinks needs at least one base and one slug")
        end = r"(?![A-Za-z0-9_~%/-]|\.[A-Za-z0-9_~%/-])"  # the slug ends here
        pattern = (
            rf"https?://(?:{'|'.join(hosts)})/l/(?P<slug>{'|'.join(map(re.escape, slugs))})"
            rf"/?{end}(?:\?(?P<query>[^\s\"'<>\\#]*))?(?:\#[^\s\"'<>\\]*)?"
        )
        object.__setattr__(self, "pattern", re.compile(pattern, re.IGNORECASE))
        given = {s.strip().lower(): s for s in reversed(self.slugs) if s.strip()}
        object.__setattr__(self, "given", given)

    def find(self, text: str) -> Iterator[tuple[int, int, str, str]]:
        """(start, end, slug, query) of every personal link in ``text``."""
        for match in self.pattern.finditer(text):
            start, end = match.span()
            while end > start and (
                text[end - 1] in _TRAILING
                or (text[end - 1] == ")" and "(" not in text[start:end])  # "(see https://…)"
            ):
                end -= 1
            query_start, query_end = match.span("query")
            query = text[query_start : min(query_end, end)] if 0 <= query_start <= end else ""
            yield start, end, self.given[match.group("slug").lower()], query


@dataclass(frozen=True, slots=True)
class EventOutcome:
    uid: str
    recurrence_id: str | None
    action: Action
    meeting_id: str | None


@dataclass(frozen=True, slots=True)
class Rewrite:
    ics: bytes
    events: tuple[EventOutcome, ...]


def event_key(uid: str, recurrence_id: str | None) -> str:
    """The stable key of an event: the same event, rewritten again, finds its meeting."""
    return f"{uid}|{recurrence_id or ''}"


# -- finding links ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    """A personal link inside a property: where it is and how to write a replacement."""

    start: int  # span in the escaped text the edit replaces
    end: int
    slug: str
    query: str
    render: Callable[[str], str]  # the join link -> the text to put in the span


def _plain(link: str) -> str:
    return link


def _quoted_param(link: str) -> str:
    return link.replace('"', "%22")


def _text(link: str) -> str:
    return escape_text(link)


def _html_text(link: str) -> str:
    return escape_text(html.escape(link))


def _links_in_line(line: ContentLine, links: PersonalLinks) -> list[_Found]:
    found: list[_Found] = []
    for param in line.params:
        for value in param.values:
            for start, end, slug, query in links.find(line.text[value.start : value.end]):
                render = _quoted_param if value.quoted else _plain
                found.append(_Found(value.start + start, value.start + end, slug, query, render))
    is_uri = line.name in _URI_PROPERTIES or (line.param("VALUE") or "").upper() == "URI"
    if is_uri:
        for start, end, slug, query in links.find(line.value):
            at = line.value_start
            found.append(_Found(at + start, at + end, slug, query, _plain))
        return found
    text, where = unescape_text(line.value)
    is_html = line.name == "X-ALT-DESC" or "html" in (line.param("FMTTYPE") or "").lower()
    for start, end, slug, query in links.find(text):
        at = line.value_start
        render = _html_text if is_html else _text
        found.append(_Found(at + where[start], at + where[end], slug, query, render))
    return found


def _options(found: list[_Found], regions: tuple[str, ...]) -> dict[str, Any]:
    """The link options of the found links, earlier links winning, sanitised."""
    raw: dict[str, str] = {}
    for item in found:
        # In HTML the separator is "&amp;" (html.unescape would also read
        # "&region" as "®ion": only the separator is undone).
        query = item.query.replace("&amp;", "&").replace("&#38;", "&")
        for name, value in parse_qsl(query, keep_blank_values=True):
            raw.setdefault(name, value)
    clean, _ignored = sanitise_options(raw, regions)
    return clean


def _edit(text: str, found: list[_Found], join_link: str) -> str:
    """``text`` with every found span replaced by the rendered join link."""
    out: list[str] = []
    at = 0
    for item in sorted(found, key=lambda f: f.start):
        out.append(text[at : item.start])
        out.append(item.render(join_link))
        at = item.end
    out.append(text[at:])
    return "".join(out)


# -- time ------------------------------------------------------------------


class _Zones:
    """TZID -> tzinfo: a zoneinfo key, a Windows zone name, else the file's
    VTIMEZONE (built here, not in icalendar's process-wide cache, so two files
    that define "Customized Time Zone" differently never see each other's)."""

    def __init__(self, document: Document, calendar: Component) -> None:
        self._document = document
        self._components: dict[str, Component] = {}
        for component in calendar.children:
            if component.name == "VTIMEZONE":
                tzid = document.prop(component, "TZID")
                if tzid is not None:
                    self._components.setdefault(tzid.value.strip(), component)
        self._cache: dict[str, tzinfo | None] = {}

    def get(self, tzid: str) -> tzinfo | None:
        if tzid not in self._cache:
            self._cache[tzid] = self._resolve(tzid)
        return self._cache[tzid]

    def _resolve(self, tzid: str) -> tzinfo | None:
        for key in (tzid, WINDOWS_TO_OLSON.get(tzid)):
            if key:
                try:
                    return ZoneInfo(key)
                except (ZoneInfoNotFoundError, ValueError):
                    pass
        component = self._components.get(tzid)
        if component is None:
            return None
        lines = self._document.lines[component.begin : component.end + 1]
        source = "\r\n".join(line.text for line in lines) + "\r\n"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed: Any = Timezone.from_ical(source)  # a Timezone, typed as Component
                zone = parsed.to_tz(lookup_tzid=False)
        except Exception:  # a VTIMEZONE icalendar cannot use: the time stays unknown
            return None
        return zone if isinstance(zone, tzinfo) else None


def _instant(line: ContentLine | None, zones: _Zones) -> datetime | None:
    """A DATE-TIME property as an aware UTC datetime, when it can be known."""
    if line is None:
        return None
    try:
        value = vDDDTypes.from_ical(line.value.strip())  # type: ignore[no-untyped-call]
    except Exception:  # icalendar raises ValueError and friends for a bad value
        return None
    if not isinstance(value, datetime):
        return None  # a DATE (all day)
    if value.tzinfo is None:
        tzid = line.param("TZID")
        zone = zones.get(tzid) if tzid else None
        if zone is None:
            return None  # floating time, or a zone nobody defines
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _duration(line: ContentLine | None) -> timedelta | None:
    if line is None:
        return None
    try:
        value = vDuration.from_ical(line.value.strip())  # type: ignore[no-untyped-call]
    except Exception:  # icalendar raises ValueError for a bad duration
        return None
    return value if isinstance(value, timedelta) else None


# -- rewriting -------------------------------------------------------------


class _Makers:
    """Asks the maker once per key within one call."""

    def __init__(self, make: MeetingMaker) -> None:
        self._make = make
        self._made: dict[str, DedicatedLink] = {}

    async def __call__(self, planned: PlannedEvent) -> DedicatedLink:
        if planned.key not in self._made:
            self._made[planned.key] = await self._make(planned)
        return self._made[planned.key]


def _text_value(line: ContentLine | None) -> str | None:
    if line is None:
        return None
    return unescape_text(line.value)[0].strip() or None


async def rewrite_ics(data: bytes, links: PersonalLinks, make: MeetingMaker) -> Rewrite:
    """The file with each one-off event's personal link replaced by its own
    meeting's link, and what happened to every event, in file order."""
    if len(data) > MAX_ICS_BYTES:
        raise InvalidCalendar(f"the calendar is larger than {MAX_ICS_BYTES // 1024} KiB")
    document = read(data)
    events = [(cal, event) for cal in document.calendars for event in cal.walk("VEVENT")]
    if len(events) > MAX_EVENTS:
        raise InvalidCalendar(f"the calendar has more than {MAX_EVENTS} events")
    series = {
        series_uid.value.strip()
        for _, event in events
        if any(document.prop(event, name) for name in _RECURRENCE)
        and (series_uid := document.prop(event, "UID")) is not None
    }
    zones = {cal.begin: _Zones(document, cal) for cal in document.calendars}
    makers = _Makers(make)
    replaced: dict[int, bytes] = {}
    outcomes: list[EventOutcome] = []
    for cal, event in events:
        uid_line = document.prop(event, "UID")
        uid = uid_line.value.strip() if uid_line is not None else ""
        rid_line = document.prop(event, "RECURRENCE-ID")
        recurrence_id = rid_line.value.strip() if rid_line is not None else None
        outcome = EventOutcome(uid, recurrence_id, "no_link", None)
        if _cancelled(document, cal, event):
            outcomes.append(EventOutcome(uid, recurrence_id, "cancelled", None))
            continue
        found = {
            index: hits
            for name in LINK_PROPERTIES
            for index in event.properties
            if document.lines[index].name == name
            and (hits := _links_in_line(document.lines[index], links))
        }
        if not found:
            outcomes.append(outcome)
            continue
        if not uid:
            number = document.lines[event.begin].number
            raise InvalidCalendar(f"line {number}: an event with the personal link has no UID")
        if uid in series or any(document.prop(event, name) for name in _RECURRENCE):
            outcomes.append(EventOutcome(uid, recurrence_id, "kept_recurring", None))
            continue
        every = [hit for hits in found.values() for hit in hits]
        options = _options(every, links.regions)
        starts_at = _instant(document.prop(event, "DTSTART"), zones[cal.begin])
        ends_at = _instant(document.prop(event, "DTEND"), zones[cal.begin])
        length = _duration(document.prop(event, "DURATION"))
        if ends_at is None and starts_at is not None and length is not None:
            ends_at = starts_at + length
        summary = _text_value(document.prop(event, "SUMMARY"))
        planned = PlannedEvent(
            key=event_key(uid, recurrence_id),
            uid=uid,
            recurrence_id=recurrence_id,
            slug=every[0].slug,
            title=options.get("title") or summary,
            starts_at=starts_at,
            ends_at=ends_at,
            options=options,
        )
        dedicated = await makers(planned)
        for index, hits in found.items():
            changed = document.lines[index]
            text = _edit(changed.text, hits, dedicated.join_link)
            replaced[index] = fold(text, changed.ending, document.newline)
        outcomes.append(EventOutcome(uid, recurrence_id, "rewritten", dedicated.meeting_id))
    return Rewrite(document.write(replaced), tuple(outcomes))


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What calendar sync follows of an event it rewrote before: when it is,
    what it is called, whether it is cancelled, and the links it holds."""

    key: str
    title: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    cancelled: bool
    text: str  # every link-holding property's value, unfolded, one per line


def event_facts(data: bytes) -> list[EventFacts]:
    """The facts of every event of an ``.ics`` (``InvalidCalendar`` if it is not one)."""
    if len(data) > MAX_ICS_BYTES:
        raise InvalidCalendar(f"the calendar is larger than {MAX_ICS_BYTES // 1024} KiB")
    document = read(data)
    out: list[EventFacts] = []
    for cal in document.calendars:
        zones = _Zones(document, cal)
        for event in cal.walk("VEVENT"):
            uid_line = document.prop(event, "UID")
            rid_line = document.prop(event, "RECURRENCE-ID")
            starts_at = _instant(document.prop(event, "DTSTART"), zones)
            ends_at = _instant(document.prop(event, "DTEND"), zones)
            length = _duration(document.prop(event, "DURATION"))
            if ends_at is None and starts_at is not None and length is not None:
                ends_at = starts_at + length
            texts = [
                document.lines[i].text
                for name in LINK_PROPERTIES
                for i in event.properties
                if document.lines[i].name == name
            ]
            uid = uid_line.value.strip() if uid_line is not None else ""
            rid = rid_line.value.strip() if rid_line is not None else None
            out.append(
                EventFacts(
                    key=event_key(uid, rid),
                    title=_text_value(document.prop(event, "SUMMARY")),
                    starts_at=starts_at,
                    ends_at=ends_at,
                    cancelled=_cancelled(document, cal, event),
                    text="\n".join(texts),
                )
            )
    return out


def _cancelled(document: Document, calendar: Component, event: Component) -> bool:
    method = document.prop(calendar, "METHOD")
    status = document.prop(event, "STATUS")
    return (method is not None and method.value.strip().upper() == "CANCEL") or (
        status is not None and status.value.strip().upper() == "CANCELLED"
    )


# -- one event as JSON -----------------------------------------------------

# The JSON fields that may hold the link, in the order their links win.
EVENT_LINK_FIELDS: tuple[str, ...] = ("location", "url", "description")


def _optional_str(event: Mapping[str, Any], name: str) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidCalendar(f"{name} must be a string")
    return value


def _json_time(event: Mapping[str, Any], name: str) -> datetime | None:
    """ISO 8601 with an offset, or milliseconds since the epoch (UTC); a time
    without an offset is floating: unknown."""
    value = event.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidCalendar(f"{name} must be an ISO 8601 time or milliseconds")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidCalendar(f"{name} is out of range") from exc
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidCalendar(f"{name} must be an ISO 8601 time or milliseconds") from exc
        if isinstance(parsed, datetime) and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
        return None
    raise InvalidCalendar(f"{name} must be an ISO 8601 time or milliseconds")


async def rewrite_event(
    event: Mapping[str, Any], links: PersonalLinks, make: MeetingMaker
) -> tuple[dict[str, Any], EventOutcome]:
    """One event as JSON (``{uid, recurrence_id?, title?, starts_at?, ends_at?,
    location?, description?, url?, recurring?, rrule?, status?}``): the same
    object with the personal link replaced in ``location``, ``url`` and
    ``description`` when it is a one-off, and what happened. Other keys are
    returned as given."""
    if not isinstance(event, Mapping):
        raise InvalidCalendar("the event must be a JSON object")
    uid = event.get("uid")
    if not isinstance(uid, str) or not uid.strip():
        raise InvalidCalendar("uid must be a non-empty string")
    uid = uid.strip()
    recurrence_id = _optional_str(event, "recurrence_id") or None
    title = _optional_str(event, "title")
    rrule = _optional_str(event, "rrule")
    status = _optional_str(event, "status")
    recurring = event.get("recurring", False)
    if not isinstance(recurring, bool):
        raise InvalidCalendar("recurring must be true or false")
    texts = {name: _optional_str(event, name) for name in EVENT_LINK_FIELDS}
    starts_at = _json_time(event, "starts_at")
    ends_at = _json_time(event, "ends_at")
    out = dict(event)
    if status is not None and status.strip().lower() == "cancelled":
        return out, EventOutcome(uid, recurrence_id, "cancelled", None)
    found: dict[str, list[_Found]] = {}
    for name, text in texts.items():
        if text:
            hits = [_Found(s, e, slug, q, _plain) for s, e, slug, q in links.find(text)]
            if hits:
                found[name] = hits
    if not found:
        return out, EventOutcome(uid, recurrence_id, "no_link", None)
    if recurring or (rrule or "").strip() or recurrence_id:
        return out, EventOutcome(uid, recurrence_id, "kept_recurring", None)
    every = [hit for hits in found.values() for hit in hits]
    options = _options(every, links.regions)
    planned = PlannedEvent(
        key=event_key(uid, recurrence_id),
        uid=uid,
        recurrence_id=recurrence_id,
        slug=every[0].slug,
        title=options.get("title") or (title.strip() if title else None) or None,
        starts_at=starts_at,
        ends_at=ends_at,
        options=options,
    )
    dedicated = await make(planned)
    for name, hits in found.items():
        text = texts[name]
        assert text is not None
        out[name] = _edit(text, hits, dedicated.join_link)
    return out, EventOutcome(uid, recurrence_id, "rewritten", dedicated.meeting_id)


__all__ = [
    "LINK_PROPERTIES",
    "MAX_EVENTS",
    "MAX_ICS_BYTES",
    "DedicatedLink",
    "EventOutcome",
    "MeetingMaker",
    "PersonalLinks",
    "PlannedEvent",
    "Rewrite",
    "event_key",
    "rewrite_event",
    "rewrite_ics",
]
