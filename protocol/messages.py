"""Every v1 wire message as a small frozen dataclass (PROTOCOL.md).

Each field is declared once, and its rule travels with its type::

    GuestId = Annotated[str, text(64)]

    class Admit(Message):
        guest: GuestId
        ref: Ref = None

``Message`` reads those rules once per class and runs them in
``__post_init__``, as h11's ``_events.py`` does: a message that exists is
valid however it was made, so ``Admit(guest="")`` raises ``BadMessage`` just as
parsing ``{"type": "admit", "guest": ""}`` does. A field whose default is
``None`` is optional; any other field is required (``None`` is refused).

``from_map`` builds a message from a decoded frame (unknown fields are
ignored, as the protocol requires); ``to_map`` turns it back, leaving out the
fields that are ``None``. Additions to the contract are marked "addition".

The rules differ by direction, on purpose:

- client -> server fields are bounded and normalised (text is stripped),
  because the server trusts nothing a peer sends;
- server -> client fields are checked for their shape: types, enumerations,
  positions >= 1, the keys of a guest or a meeting. They are not held to
  length limits the protocol never promised.

Checks stay cheap, because the server builds a ``JoinRequest`` and a
``Waiting`` per knock: an isinstance or membership test per field, no
copies, and no regular expression on anything larger than a host id.
Booleans are strict (``"false"`` is not a boolean) and an integer is never a
boolean (``bool`` is a subclass of ``int`` in Python).

``Error.code`` accepts any short string, not only today's ``ErrorCode``
values: PROTOCOL.md allows additions, and a client must still read an error
from a newer server (``errors.error_for_code`` maps a code it does not know
to ``InternalError``). The server builds ``Error`` from a ``ProtocolError``,
whose ``code`` is always an ``ErrorCode``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, ClassVar, TypeVar, get_args, get_type_hints

from protocol.errors import BadMessage

Check = Callable[[str, Any], Any]
"""A field rule: ``(field name, value) -> clean value``, or raise ``BadMessage``."""

M = TypeVar("M", bound="Message")

HOST_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
HOST_STATES = ("available", "in_meeting", "away")


# -- rules ---------------------------------------------------------------------------


# Control characters (C0, DEL, C1) and lone surrogates: a name with CR/LF would
# break an email header, a lone surrogate cannot be encoded as UTF-8 at all.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Multi-line text (a host's note or line to a guest) may hold LF and TAB.
_UNSAFE_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def unsafe(value: str) -> bool:
    """True if ``value`` holds a control character or a lone surrogate."""
    return _UNSAFE.search(value) is not None


def safe_text(name: str, value: str, *, lines: bool = False) -> str:
    """``value`` if it holds no control character or lone surrogate, else BadMessage."""
    if (_UNSAFE_LINES if lines else _UNSAFE).search(value):
        raise BadMessage(f"'{name}' holds a control character or an invalid one")
    return value


def text(
    max_len: int, *, strip: bool = True, allow_empty: bool = False, lines: bool = False
) -> Check:
    """A string a peer sent: stripped, not empty, at most ``max_len`` long, without
    control characters (``lines``: LF and TAB allowed) or lone surrogates."""

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise BadMessage(f"'{name}' must be a string")
        if strip:
            value = value.strip()
        if not value and not allow_empty:
            raise BadMessage(f"'{name}' must not be empty")
        if len(value) > max_len:
            raise BadMessage(f"'{name}' is longer than {max_len} characters")
        safe_text(name, value, lines=lines)
        return str(value)  # a plain str, also for a StrEnum member

    return check


def choice(*allowed: str) -> Check:
    """One of ``allowed`` (a plain str comes out, also for a StrEnum member)."""

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise BadMessage(f"'{name}' must be one of: {', '.join(allowed)}")
        return str(value)

    return check


def string(name: str, value: Any) -> str:
    """Any string (server -> client text the protocol puts no bound on)."""
    if not isinstance(value, str):
        raise BadMessage(f"'{name}' must be a string")
    return value


def integer(minimum: int) -> Check:
    """An integer, not a boolean, at least ``minimum``."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise BadMessage(f"'{name}' must be an integer >= {minimum}")
        return value

    return check


def boolean(name: str, value: Any) -> bool:
    """``true`` or ``false``; not ``1``, not ``"false"``."""
    if not isinstance(value, bool):
        raise BadMessage(f"'{name}' must be true or false")
    return value


def mapping(name: str, value: Any) -> dict[str, Any]:
    """A map, kept as it is (not copied)."""
    if not isinstance(value, dict):
        raise BadMessage(f"'{name}' must be a map")
    return value


def link_options(name: str, value: Any) -> dict[str, Any]:
    """A knock's link options: a map of clean names (at most 40 characters) to
    scalars; text values hold no control character or lone surrogate. Which
    names and values count is ``protocol.links.sanitise_options``'s business."""
    if not isinstance(value, dict):
        raise BadMessage(f"'{name}' must be a map")
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > 40:
            raise BadMessage(f"'{name}' has a name that is not 1..40 characters")
        safe_text(f"{name} name", key)
        if isinstance(item, str):
            safe_text(f"{name}.{key}", item)
        elif item is not None and not isinstance(item, bool | int | float):
            raise BadMessage(f"'{name}.{key}' must be a string, a number or a boolean")
    return value


def list_of(item: Check) -> Check:
    """A list whose every item passes ``item`` (kept as it is)."""

    def check(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise BadMessage(f"'{name}' must be a list")
        try:
            for each in value:
                item(name, each)
        except BadMessage:  # rare: check again, naming the item
            for i, each in enumerate(value):
                item(f"{name}[{i}]", each)
            raise
        return value

    return check


def shape(required: Mapping[str, Check], optional: Mapping[str, Check] | None = None) -> Check:
    """A map with these keys (extra keys pass: a newer server may add some).
    The map is checked in place, not copied. Paths such as ``guest.id`` are
    only built for an error, so a valid map costs a lookup and a check per key."""
    need = tuple(required.items())
    maybe = tuple((optional or {}).items())

    def keys(name: str, value: dict[str, Any], path: bool) -> None:
        for key, rule in need:
            each = value.get(key)
            if each is None:
                raise BadMessage(f"'{name}' needs '{key}'")
            rule(f"{name}.{key}" if path else key, each)
        for key, rule in maybe:
            each = value.get(key)
            if each is not None:
                rule(f"{name}.{key}" if path else key, each)

    def check(name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BadMessage(f"'{name}' must be a map")
        try:
            keys(name, value, False)
        except BadMessage:  # rare: check again, naming the key by its path
            keys(name, value, True)
            raise
        return value

    return check


def host_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not HOST_ID_RE.match(value):
        raise BadMessage(f"'{name}' must be 1..64 of [A-Za-z0-9_.:-]")
    return value


def declared_meeting(name: str, value: Any) -> dict[str, str]:
    """A meeting a host declares: {id, url?, title?}, rebuilt from its known keys."""
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


def check_ref(name: str, value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadMessage(f"'{name}' must be a string or an integer")
    if len(str(value)) > 64:
        raise BadMessage(f"'{name}' is longer than 64 characters")
    return value


# -- field types: each kind of field, with its rule, named once ---------------------

Ref = Annotated[str | int | None, check_ref]
"""A client's ``ref`` (PROTOCOL.md, Transport), echoed in ``ack``/``error``."""

GuestId = Annotated[str, text(64)]
HostId = Annotated[str, host_id]
HostState = Annotated[str, choice(*HOST_STATES)]
Token = Annotated[str, text(4096)]
ResumeKey = Annotated[str, text(256)]
Name = Annotated[str, text(100)]
Email = Annotated[str, text(254)]
Title = Annotated[str, text(200)]
Note = Annotated[str, text(500, lines=True)]  # busy/deny message: host -> server -> guest
Line = Annotated[str, text(1000, lines=True)]  # a line of text: host -> server -> guest
SessionId = Annotated[str, text(128)]
Map = Annotated[dict[str, Any], mapping]
LinkOptions = Annotated[dict[str, Any], link_options]
Flag = Annotated[bool, boolean]
Text = Annotated[str, string]
Place = Annotated[int, integer(1)]  # a place in the queue, 1 is next
Count = Annotated[int, integer(0)]
PageSize = Annotated[int, integer(1)]
DeclaredMeeting = Annotated[dict[str, Any], declared_meeting]
Action = Annotated[str, choice("admit", "merge", "new_meeting", "busy", "deny")]
AdmitMode = Annotated[str, choice("admit", "merge", "new_meeting")]
LeftReason = Annotated[str, choice("cancelled", "disconnected", "expired", "timed_out")]
Estimate = Annotated[int, integer(0)]  # addition: seconds (a hold's estimate)
Millis = Annotated[int, integer(0)]  # addition: a time, ms since the epoch
HOLD_ESTIMATE_MAX_S = 24 * 3600


def estimate(name: str, value: Any) -> int:
    """A hold's estimate from a host: 0..24 h in seconds."""
    integer(0)(name, value)
    if value > HOLD_ESTIMATE_MAX_S:
        raise BadMessage(f"'{name}' must be at most {HOLD_ESTIMATE_MAX_S} seconds")
    return int(value)


HoldEstimate = Annotated[int, estimate]
HOLD = shape({}, {"message": string, "estimate_s": integer(0), "until": integer(0)})
"""Addition: a hold as devices see it: the host's line, estimate and its end."""
HoldInfo = Annotated[dict[str, Any], HOLD]
ErrorCodeText = Annotated[str, text(64)]  # lenient on purpose: see the module docstring
OptionNames = Annotated[list[str], list_of(string)]

GUEST_CARD = shape(
    {
        "id": text(64),
        "name": string,
        "verified": boolean,
        "label": string,
        "knocked_at": integer(0),
        "options": mapping,
    },
    # additions: away (dropped, keeps its place), held (a ``hold``'s line and estimate)
    {"email": string, "away": boolean, "held": HOLD},
)
Guest = Annotated[dict[str, Any], GUEST_CARD]
"""A guest as hosts see it (PROTOCOL.md, Guest)."""
Guests = Annotated[list[dict[str, Any]], list_of(GUEST_CARD)]
Meeting = Annotated[
    dict[str, Any],
    shape({"id": string, "url": string, "title": string, "duration": integer(1)}),
]
"""Where an admitted guest goes: {id, url, title, duration}."""
Policy = Annotated[dict[str, Any], shape({"locked": boolean, "bypass": string})]


# -- the base class ------------------------------------------------------------------

Rule = tuple[str, Check, bool]  # field name, its check, required


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every wire message: validates itself on construction."""

    TYPE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name, check, required in _rules(type(self)):
            value = getattr(self, name)
            if value is None:
                if required:
                    raise BadMessage(f"'{self.TYPE}' needs '{name}'")
                continue
            clean = check(name, value)
            if clean is not value:  # normalised (stripped text, a StrEnum member)
                object.__setattr__(self, name, clean)

    @classmethod
    def from_map(cls: type[M], raw: Mapping[str, Any]) -> M:
        """The message a decoded map describes; ``BadMessage`` if it is not valid."""
        kwargs: dict[str, Any] = {}
        for name, _, required in _rules(cls):
            value = raw.get(name)
            if value is None:
                if required:
                    raise BadMessage(f"'{cls.TYPE}' needs '{name}'")
                continue
            kwargs[name] = value
        return cls(**kwargs)

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.TYPE}
        for name, _, _ in _rules(type(self)):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @property
    def type(self) -> str:
        return self.TYPE

    @property
    def reference(self) -> str | int | None:
        """The client's ``ref``, if this message type carries one."""
        value: str | int | None = getattr(self, "ref", None)
        return value


_RULES: dict[type[Message], tuple[Rule, ...]] = {}


def _rules(cls: type[Message]) -> tuple[Rule, ...]:
    """The fields of ``cls`` with their checks, read from the annotations once."""
    rules = _RULES.get(cls)
    if rules is None:
        hints = get_type_hints(cls, include_extras=True)
        rules = _RULES[cls] = tuple(
            (f.name, _check_of(cls, f.name, hints[f.name]), f.default is not None)
            for f in fields(cls)
        )
    return rules


def _check_of(cls: type[Message], name: str, hint: Any) -> Check:
    """The rule in ``Annotated[T, rule]`` (also inside ``Annotated[...] | None``)."""
    for candidate in (hint, *get_args(hint)):
        metadata = getattr(candidate, "__metadata__", None)
        if metadata:
            check: Check = metadata[0]
            return check
    raise TypeError(f"{cls.__name__}.{name} has no rule: declare it as Annotated[T, rule]")


# ---------------------------------------------------------------- host -> server


@dataclass(frozen=True, slots=True)
class Hello(Message):
    TYPE = "hello"
    token: Token
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Presence(Message):
    TYPE = "presence"
    state: HostState
    meeting: DeclaredMeeting | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Admit(Message):
    TYPE = "admit"
    guest: GuestId
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Merge(Message):
    TYPE = "merge"
    guest: GuestId
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class NewMeeting(Message):
    TYPE = "new_meeting"
    guest: GuestId
    title: Title | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Busy(Message):
    TYPE = "busy"
    guest: GuestId
    message: Note | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Deny(Message):
    TYPE = "deny"
    guest: GuestId
    message: Note | None = None
    block: Flag | None = None  # addition: also block this guest's email
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class SendMessage(Message):
    TYPE = "message"
    guest: GuestId
    text: Line
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class AdmitAll(Message):
    """Addition: admit every waiting guest, oldest first."""

    TYPE = "admit_all"
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Hold(Message):
    """Addition: keep the guest in its place with a line and an optional estimate
    (seconds); the guest gets ``held``, every device ``guest_held``."""

    TYPE = "hold"
    guest: GuestId
    message: Note | None = None
    estimate_s: HoldEstimate | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class DenyAll(Message):
    """Addition: deny every waiting guest (with one line), in one atomic step."""

    TYPE = "deny_all"
    message: Note | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Page(Message):
    """Addition: ask for waiting guests after the guest ``after`` (none: from the
    oldest), at most ``limit`` (capped by the server); answered by ``lobby_page``."""

    TYPE = "page"
    after: GuestId | None = None
    limit: PageSize | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Refresh(Message):
    """Addition: swap in a new token for this device before the old one expires,
    without reconnecting (the new token must name the same host)."""

    TYPE = "refresh"
    token: Token
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class UpdateSettings(Message):
    """Addition: a partial settings update from a host device."""

    TYPE = "settings"
    settings: Map = field(default_factory=dict)
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Ping(Message):
    TYPE = "ping"
    ref: Ref = None


# --------------------------------------------------------------- guest -> server


@dataclass(frozen=True, slots=True)
class Knock(Message):
    TYPE = "knock"
    name: Name
    email: Email | None = None
    token: Token | None = None
    options: LinkOptions | None = None
    session: SessionId | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Resume(Message):
    TYPE = "resume"
    resume: ResumeKey
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Cancel(Message):
    TYPE = "cancel"
    ref: Ref = None


# ---------------------------------------------------------------- server -> host


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    TYPE = "welcome"
    host: HostId
    state: HostState
    waiting: Guests  # oldest first
    policy: Policy
    name: Text | None = None  # addition: the host's display name
    meeting: DeclaredMeeting | None = None  # addition: the declared meeting
    settings: Map | None = None  # addition: the host's settings
    # addition: how many guests wait in all; ``waiting`` holds the oldest
    # ``WELCOME_GUESTS`` of them, the rest come with ``page`` requests.
    waiting_total: Count | None = None


@dataclass(frozen=True, slots=True)
class LobbyPage(Message):
    """Addition: the answer to ``page``: waiting guests after ``after``, oldest first."""

    TYPE = "lobby_page"
    guests: Guests
    more: Flag
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class JoinRequest(Message):
    TYPE = "join_request"
    guest: Guest
    position: Place
    host_state: HostState


@dataclass(frozen=True, slots=True)
class GuestLeft(Message):
    TYPE = "guest_left"
    guest: GuestId
    reason: LeftReason


@dataclass(frozen=True, slots=True)
class Resolved(Message):
    TYPE = "resolved"
    guest: GuestId
    action: Action
    meeting: Meeting | None = None


@dataclass(frozen=True, slots=True)
class GuestAway(Message):
    """Addition: the guest's connection dropped; it keeps its place for the
    resume window (then ``guest_left`` ``expired``)."""

    TYPE = "guest_away"
    guest: GuestId


@dataclass(frozen=True, slots=True)
class GuestBack(Message):
    """Addition: the guest resumed its place."""

    TYPE = "guest_back"
    guest: GuestId


@dataclass(frozen=True, slots=True)
class GuestHeld(Message):
    """Addition: a device put the guest on hold; it keeps its place."""

    TYPE = "guest_held"
    guest: GuestId
    held: HoldInfo


@dataclass(frozen=True, slots=True)
class RaidNotice(Message):
    """Addition: more than the host's ``raid_threshold`` knocks in the last minute:
    one collapsed notice instead of one alert per knock (repeated at most every few
    seconds while it lasts); quiet alerts until ``until``. ``autolock``: the link is
    locking itself (a ``settings`` with ``policy.locked`` follows)."""

    TYPE = "raid"
    count: Count
    window_s: Count
    until: Millis
    autolock: Flag


@dataclass(frozen=True, slots=True)
class PresenceChanged(Message):
    """Addition: a device changed the host's presence; every device hears it."""

    TYPE = "presence"
    state: HostState
    meeting: DeclaredMeeting | None = None


@dataclass(frozen=True, slots=True)
class SettingsChanged(Message):
    """Addition: the host's settings changed (API or a device)."""

    TYPE = "settings"
    settings: Map


@dataclass(frozen=True, slots=True)
class Ack(Message):
    TYPE = "ack"
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Error(Message):
    TYPE = "error"
    code: ErrorCodeText
    message: Text
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Pong(Message):
    TYPE = "pong"
    ref: Ref = None


# --------------------------------------------------------------- server -> guest


@dataclass(frozen=True, slots=True)
class Waiting(Message):
    TYPE = "waiting"
    guest: GuestId
    resume: ResumeKey
    position: Place
    host_online: Flag
    ignored: OptionNames | None = None  # addition: link options that were dropped
    host_name: Text | None = None  # addition
    # addition: whether the host gets an email about this wait (absent: not known)
    host_notified: Flag | None = None


@dataclass(frozen=True, slots=True)
class Position(Message):
    TYPE = "position"
    position: Place


@dataclass(frozen=True, slots=True)
class HostStatus(Message):
    """Addition: the host came online, went offline or changed its state, after
    ``waiting`` told the guest ``host_online`` (a page that said "offline" would
    say so for the whole wait)."""

    TYPE = "host_status"
    online: Flag
    state: HostState


@dataclass(frozen=True, slots=True)
class Admitted(Message):
    TYPE = "admitted"
    mode: AdmitMode
    meeting: Meeting


@dataclass(frozen=True, slots=True)
class BusyNotice(Message):
    TYPE = "busy"
    message: Note | None = None


@dataclass(frozen=True, slots=True)
class Denied(Message):
    TYPE = "denied"
    message: Note | None = None


@dataclass(frozen=True, slots=True)
class HostMessage(Message):
    TYPE = "message"
    text: Line


@dataclass(frozen=True, slots=True)
class Held(Message):
    """Addition: the host put the guest on hold: it keeps its place; ``until`` is
    when the estimate runs out (ms since the epoch), for a countdown."""

    TYPE = "held"
    message: Note | None = None
    estimate_s: Estimate | None = None
    until: Millis | None = None


@dataclass(frozen=True, slots=True)
class TimedOut(Message):
    """Addition: the host's maximum wait passed unanswered, with the host's line;
    the connection then closes (1000)."""

    TYPE = "timed_out"
    message: Note | None = None


def _table(*classes: type[Message]) -> dict[str, type[Message]]:
    for cls in classes:
        _rules(cls)  # read every rule at import: a field without one fails here
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
    Hold,
    DenyAll,
    UpdateSettings,
    Refresh,
    Page,
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
    GuestHeld,
    RaidNotice,
    PresenceChanged,
    SettingsChanged,
    LobbyPage,
    Ack,
    Error,
    Pong,
)
TO_GUEST = _table(
    Waiting,
    Position,
    HostStatus,
    Admitted,
    BusyNotice,
    Denied,
    HostMessage,
    Held,
    TimedOut,
    Error,
    Pong,
)


def parse(raw: Mapping[str, Any], table: Mapping[str, type[Message]]) -> Message:
    """Build the message a decoded map describes, from one direction's table."""
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise BadMessage("a frame needs a string 'type'")
    cls = table.get(kind)
    if cls is None:
        raise BadMessage(f"unknown message type '{kind[:40]}'")
    return cls.from_map(raw)
