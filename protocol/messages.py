"""Every v1 wire message as a small frozen dataclass (PROTOCOL.md).

Each class knows its ``TYPE``, how to build itself from a decoded map
(``from_map``, which validates and raises ``BadMessage``) and how to turn
itself back into a map (``to_map``). Unknown extra fields are ignored, as the
protocol requires. Additions to the contract are marked "addition".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from protocol.errors import BadMessage

Ref = str | int | None
Validator = Callable[[str, Any], Any]
M = TypeVar("M", bound="Message")

HOST_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
HOST_STATES = ("available", "in_meeting", "away")
REPLY_ACTIONS = ("admit", "merge", "new_meeting", "busy", "deny")
ADMIT_MODES = ("admit", "merge", "new_meeting")
LEFT_REASONS = ("cancelled", "disconnected", "expired")


# -- validators: (field name, raw value) -> clean value, or raise BadMessage --


def text(max_len: int, *, strip: bool = True, allow_empty: bool = False) -> Validator:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise BadMessage(f"'{name}' must be a string")
        if strip:
            value = value.strip()
        if not value and not allow_empty:
            raise BadMessage(f"'{name}' must not be empty")
        if len(value) > max_len:
            raise BadMessage(f"'{name}' is longer than {max_len} characters")
        return str(value)

    return check


def choice(*allowed: str) -> Validator:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise BadMessage(f"'{name}' must be one of: {', '.join(allowed)}")
        return str(value)

    return check


def host_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not HOST_ID_RE.match(value):
        raise BadMessage(f"'{name}' must be 1..64 of [A-Za-z0-9_.:-]")
    return value


def mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise BadMessage(f"'{name}' must be a map")
    return dict(value)


def anything(name: str, value: Any) -> Any:
    return value


def meeting(name: str, value: Any) -> dict[str, str]:
    """A meeting a host declares: {id, url?, title?}."""
    raw = mapping(name, value)
    out = {"id": text(128)(f"{name}.id", raw.get("id"))}
    if raw.get("url") is not None:
        url = text(2048)(f"{name}.url", raw["url"])
        if not url.startswith(("https://", "http://")):
            raise BadMessage(f"'{name}.url' must be an http(s) URL")
        out["url"] = url
    if raw.get("title") is not None:
        out["title"] = text(200)(f"{name}.title", raw["title"])
    return out


def check_ref(value: Any) -> Ref:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadMessage("'ref' must be a string or an integer")
    if len(str(value)) > 64:
        raise BadMessage("'ref' is longer than 64 characters")
    return value


GUEST_ID = text(64)
NAME = text(100)
EMAIL = text(254)
LINE = text(1000)
NOTE = text(500)


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every wire message."""

    TYPE: ClassVar[str] = ""
    # field name -> (validator, required); ``ref`` is handled for every type.
    SPEC: ClassVar[dict[str, tuple[Validator, bool]]] = {}

    @classmethod
    def from_map(cls: type[M], raw: Mapping[str, Any]) -> M:
        kwargs: dict[str, Any] = {}
        for name, (check, required) in cls.SPEC.items():
            value = raw.get(name)
            if value is None:
                if required:
                    raise BadMessage(f"'{cls.TYPE}' needs '{name}'")
                continue
            kwargs[name] = check(name, value)
        if "ref" in _field_names(cls):
            kwargs["ref"] = check_ref(raw.get("ref"))
        return cls(**kwargs)

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.TYPE}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @property
    def type(self) -> str:
        return self.TYPE

    @property
    def reference(self) -> Ref:
        """The client's ``ref``, if this message type carries one."""
        value: Ref = getattr(self, "ref", None)
        return value


_NAMES: dict[type[Message], tuple[str, ...]] = {}


def _field_names(cls: type[Message]) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


# ---------------------------------------------------------------- host -> server


@dataclass(frozen=True, slots=True)
class Hello(Message):
    TYPE = "hello"
    SPEC = {"token": (text(4096), True)}
    token: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Presence(Message):
    TYPE = "presence"
    SPEC = {"state": (choice(*HOST_STATES), True), "meeting": (meeting, False)}
    state: str
    meeting: dict[str, str] | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Admit(Message):
    TYPE = "admit"
    SPEC = {"guest": (GUEST_ID, True)}
    guest: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Merge(Message):
    TYPE = "merge"
    SPEC = {"guest": (GUEST_ID, True)}
    guest: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class NewMeeting(Message):
    TYPE = "new_meeting"
    SPEC = {"guest": (GUEST_ID, True), "title": (text(200), False)}
    guest: str
    title: str | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Busy(Message):
    TYPE = "busy"
    SPEC = {"guest": (GUEST_ID, True), "message": (NOTE, False)}
    guest: str
    message: str | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Deny(Message):
    TYPE = "deny"
    SPEC = {"guest": (GUEST_ID, True), "message": (NOTE, False), "block": (anything, False)}
    guest: str
    message: str | None = None
    block: bool | None = None  # addition: also block this guest's email
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class SendMessage(Message):
    TYPE = "message"
    SPEC = {"guest": (GUEST_ID, True), "text": (LINE, True)}
    guest: str
    text: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class AdmitAll(Message):
    """Addition: admit every waiting guest, oldest first."""

    TYPE = "admit_all"
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class UpdateSettings(Message):
    """Addition: a partial settings update from a host device."""

    TYPE = "settings"
    SPEC = {"settings": (mapping, True)}
    settings: dict[str, Any] = field(default_factory=dict)
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Ping(Message):
    TYPE = "ping"
    ref: Ref = None


# --------------------------------------------------------------- guest -> server


@dataclass(frozen=True, slots=True)
class Knock(Message):
    TYPE = "knock"
    SPEC = {
        "name": (NAME, True),
        "email": (EMAIL, False),
        "token": (text(4096), False),
        "options": (mapping, False),
        "session": (text(128), False),
    }
    name: str
    email: str | None = None
    token: str | None = None
    options: dict[str, Any] | None = None
    session: str | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Resume(Message):
    TYPE = "resume"
    SPEC = {"resume": (text(256), True)}
    resume: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Cancel(Message):
    TYPE = "cancel"
    ref: Ref = None


# ---------------------------------------------------------------- server -> host

ANY = (anything, False)
NEED = (anything, True)


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    TYPE = "welcome"
    SPEC = {
        "host": NEED,
        "state": NEED,
        "waiting": NEED,
        "policy": NEED,
        "meeting": ANY,
        "settings": ANY,
        "name": ANY,
    }
    host: str
    state: str
    waiting: list[dict[str, Any]]
    policy: dict[str, Any]
    name: str | None = None  # addition: the host's display name
    meeting: dict[str, Any] | None = None  # addition: the declared meeting
    settings: dict[str, Any] | None = None  # addition: the host's settings


@dataclass(frozen=True, slots=True)
class JoinRequest(Message):
    TYPE = "join_request"
    SPEC = {"guest": NEED, "position": NEED, "host_state": NEED}
    guest: dict[str, Any]
    position: int
    host_state: str


@dataclass(frozen=True, slots=True)
class GuestLeft(Message):
    TYPE = "guest_left"
    SPEC = {"guest": NEED, "reason": NEED}
    guest: str
    reason: str


@dataclass(frozen=True, slots=True)
class Resolved(Message):
    TYPE = "resolved"
    SPEC = {"guest": NEED, "action": NEED, "meeting": ANY}
    guest: str
    action: str
    meeting: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class GuestAway(Message):
    """Addition: the guest's connection dropped; it keeps its place for the
    resume window (then ``guest_left`` ``expired``)."""

    TYPE = "guest_away"
    SPEC = {"guest": NEED}
    guest: str


@dataclass(frozen=True, slots=True)
class GuestBack(Message):
    """Addition: the guest resumed its place."""

    TYPE = "guest_back"
    SPEC = {"guest": NEED}
    guest: str


@dataclass(frozen=True, slots=True)
class PresenceChanged(Message):
    """Addition: a device changed the host's presence; every device hears it."""

    TYPE = "presence"
    SPEC = {"state": NEED, "meeting": ANY}
    state: str
    meeting: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SettingsChanged(Message):
    """Addition: the host's settings changed (API or a device)."""

    TYPE = "settings"
    SPEC = {"settings": NEED}
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ack(Message):
    TYPE = "ack"
    SPEC = {"ref": ANY}
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Error(Message):
    TYPE = "error"
    SPEC = {"code": NEED, "message": NEED}
    code: str
    message: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Pong(Message):
    TYPE = "pong"
    ref: Ref = None


# --------------------------------------------------------------- server -> guest


@dataclass(frozen=True, slots=True)
class Waiting(Message):
    TYPE = "waiting"
    SPEC = {
        "guest": NEED,
        "resume": NEED,
        "position": NEED,
        "host_online": NEED,
        "ignored": ANY,
        "host_name": ANY,
    }
    guest: str
    resume: str
    position: int
    host_online: bool
    ignored: list[str] | None = None  # addition: link options that were dropped
    host_name: str | None = None  # addition


@dataclass(frozen=True, slots=True)
class Position(Message):
    TYPE = "position"
    SPEC = {"position": NEED}
    position: int


@dataclass(frozen=True, slots=True)
class Admitted(Message):
    TYPE = "admitted"
    SPEC = {"mode": NEED, "meeting": NEED}
    mode: str
    meeting: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BusyNotice(Message):
    TYPE = "busy"
    SPEC = {"message": ANY}
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Denied(Message):
    TYPE = "denied"
    SPEC = {"message": ANY}
    message: str | None = None


@dataclass(frozen=True, slots=True)
class HostMessage(Message):
    TYPE = "message"
    SPEC = {"text": NEED}
    text: str


def _table(*classes: type[Message]) -> dict[str, type[Message]]:
    return {cls.TYPE: cls for cls in classes}


HOST_FRAMES = _table(
    Hello,
    Presence,
    Admit,
    Merge,
    NewMeeting,
    Busy,
    Deny,
    SendMessage,
    AdmitAll,
    UpdateSettings,
    Ping,
)
GUEST_FRAMES = _table(Knock, Resume, Cancel, Ping)
TO_HOST = _table(
    Welcome,
    JoinRequest,
    GuestLeft,
    Resolved,
    GuestAway,
    GuestBack,
    PresenceChanged,
    SettingsChanged,
    Ack,
    Error,
    Pong,
)
TO_GUEST = _table(Waiting, Position, Admitted, BusyNotice, Denied, HostMessage, Error, Pong)

REPLIES: tuple[type[Message], ...] = (Admit, Merge, NewMeeting, Busy, Deny)


def parse(raw: Mapping[str, Any], table: Mapping[str, type[Message]]) -> Message:
    """Build the message a decoded map describes, from one direction's table."""
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise BadMessage("a frame needs a string 'type'")
    cls = table.get(kind)
    if cls is None:
        raise BadMessage(f"unknown message type '{kind[:40]}'")
    return cls.from_map(raw)
