"""The doorbell: the events the Lua scripts publish on a host's channel.

The store is the truth and pub/sub only rings the bell (DESIGN.md). Each
event is one MessagePack *stream*: its kind, the host's event counter after
it (``0`` for events that do not move the queue), then its fields in the
order below; ``knock`` and ``resolved`` end with a map packed by the caller
(the guest's info, the stored outcome). ``decode`` and ``encode`` are the only
readers and writers in Python; the scripts get the kind names rendered in
(``lua_kinds``) and their headers list the same fields.

=============  ====================================================
kind           fields after (kind, ev)
=============  ====================================================
``knock``      position, host_state, guest (map)
``left``       guest, score, reason
``resolved``   guest, score, action, outcome (map)
``away``       guest
``resumed``    guest, conn
``presence``   state, meeting (map or false)
``settings``   settings (map)
``message``    guest, text
``held``       guest, held (map)                 (addition)
``dismissed``  guest, score, reason, outcome (map) (addition: a
               guest left without a reply, with a line: max wait)
``raid``       count, since, until, autolock     (addition)
=============  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar

import msgpack

from protocol.errors import BadMessage


@dataclass(frozen=True, slots=True)
class Knocked:
    KIND: ClassVar[str] = "knock"
    ev: int
    position: int
    host_state: str
    guest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Left:
    KIND: ClassVar[str] = "left"
    ev: int
    guest: str
    score: int
    reason: str


@dataclass(frozen=True, slots=True)
class Resolved:
    KIND: ClassVar[str] = "resolved"
    ev: int
    guest: str
    score: int
    action: str
    outcome: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WentAway:
    KIND: ClassVar[str] = "away"
    ev: int
    guest: str


@dataclass(frozen=True, slots=True)
class Resumed:
    KIND: ClassVar[str] = "resumed"
    ev: int
    guest: str
    conn: str


@dataclass(frozen=True, slots=True)
class PresenceSet:
    KIND: ClassVar[str] = "presence"
    ev: int
    state: str
    meeting: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SettingsSet:
    KIND: ClassVar[str] = "settings"
    ev: int
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Said:
    KIND: ClassVar[str] = "message"
    ev: int
    guest: str
    text: str


@dataclass(frozen=True, slots=True)
class HeldSet:
    """A device put a guest on hold (its card and the guest's ``held``)."""

    KIND: ClassVar[str] = "held"
    ev: int
    guest: str
    held: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dismissed:
    """A guest left the queue without a reply but with an outcome (max wait)."""

    KIND: ClassVar[str] = "dismissed"
    ev: int
    guest: str
    score: int
    reason: str
    outcome: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Raid:
    """Knocks over the host's threshold in the last minute."""

    KIND: ClassVar[str] = "raid"
    ev: int
    count: int
    since: int
    until: int
    autolock: bool


Event = (
    Knocked
    | Left
    | Resolved
    | WentAway
    | Resumed
    | PresenceSet
    | SettingsSet
    | Said
    | HeldSet
    | Dismissed
    | Raid
)
EVENT_TYPES: tuple[type[Event], ...] = (
    Knocked,
    Left,
    Resolved,
    WentAway,
    Resumed,
    PresenceSet,
    SettingsSet,
    Said,
    HeldSet,
    Dismissed,
    Raid,
)
_BY_KIND: dict[str, type[Event]] = {cls.KIND: cls for cls in EVENT_TYPES}
_FIELDS: dict[type[Event], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in EVENT_TYPES
}


def kind_of(data: bytes) -> str | None:
    """The kind of an encoded event, read off its first item without decoding
    the rest (every kind is a short string: msgpack's fixstr); ``None`` if the
    bytes do not start that way (``decode`` then says why)."""
    if not data or not 0xA0 <= data[0] <= 0xBF:
        return None
    end = 1 + (data[0] & 0x1F)
    if len(data) < end:
        return None
    try:
        return data[1:end].decode()
    except UnicodeDecodeError:
        return None


def _array_header(count: int) -> bytes:
    return bytes((0x90 | count,)) if count < 16 else b"\xdc" + count.to_bytes(2, "big")


# Per kind: the msgpack array header that turns its items into one array.
_HEADERS: dict[type[Event], bytes] = {
    cls: _array_header(1 + len(names)) for cls, names in _FIELDS.items()
}


def decode(data: bytes) -> Event:
    """The typed event a script published; ``BadMessage`` if it is not one.
    The kind (read off the first item) says how many items follow, so the
    whole event unpacks as one array: a streaming ``Unpacker`` per event cost
    two to ten times more (its buffer is a megabyte)."""
    kind = kind_of(data)
    cls = _BY_KIND.get(kind) if kind is not None else None
    if cls is None:
        raise BadMessage("unknown event kind")
    names = _FIELDS[cls]
    try:
        parts = msgpack.unpackb(_HEADERS[cls] + data, raw=False)
    except (ValueError, msgpack.UnpackException):
        # Too many items, too few, or bytes that are not msgpack: say which.
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(data)
        try:
            list(unpacker)
        except (ValueError, msgpack.UnpackException) as exc:
            raise BadMessage("undecodable event") from exc
        raise BadMessage(f"'{cls.KIND}' event needs {len(names)} fields") from None
    kwargs = dict(zip(names, parts[1:], strict=True))
    if cls is PresenceSet and not kwargs["meeting"]:
        kwargs["meeting"] = None  # Lua packs "no meeting" as false
    return cls(**kwargs)


def encode(event: Event) -> bytes:
    """The bytes a script would publish for ``event`` (Python publishers and tests)."""
    out = msgpack.packb(event.KIND, use_bin_type=True)
    for name in _FIELDS[type(event)]:
        value = getattr(event, name)
        if value is None and isinstance(event, PresenceSet):
            value = False
        out += msgpack.packb(value, use_bin_type=True)
    return bytes(out)


def lua_kinds() -> dict[str, str]:
    """Kind names by class name, for the scripts (``K.Knocked`` == "knock")."""
    return {cls.__name__: cls.KIND for cls in EVENT_TYPES}


class Hook(StrEnum):
    """The webhook event types (Standard Webhooks ``type``). The scripts that
    publish a doorbell event write the matching one to the host's outbox
    (``lua_hooks``), so a webhook is as durable as the change it reports."""

    KNOCKED = "guest.knocked"
    RESOLVED = "guest.resolved"
    LEFT = "guest.left"
    AWAY = "guest.away"
    BACK = "guest.back"
    HELD = "guest.held"  # addition (issue 14): a device put a guest on hold
    PRESENCE = "host.presence"
    # Planned meetings (server/meetings): written by the code that made the
    # change, right after it is stored, with the thing's JSON view as ``data``.
    MEETING_CREATED = "meeting.created"
    MEETING_UPDATED = "meeting.updated"
    MEETING_CANCELLED = "meeting.cancelled"
    BOOKING_CREATED = "booking.created"
    BOOKING_UPDATED = "booking.updated"
    BOOKING_CANCELLED = "booking.cancelled"
    # Calendar sync (server/calendars): a connected calendar's round failed.
    CALENDAR_SYNC_FAILED = "calendar.sync_failed"


def lua_hooks() -> dict[str, str]:
    """Hook types by member name, for the scripts (``H.KNOCKED`` == "guest.knocked")."""
    return {hook.name: hook.value for hook in Hook}
