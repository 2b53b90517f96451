from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

import pytest

from protocol.codec import CODECS
from protocol.errors import BadMessage, ErrorCode
from protocol.messages import (
    GUEST_FRAMES,
    HOST_FRAMES,
    TO_GUEST,
    TO_HOST,
    Ack,
    Admit,
    Admitted,
    Busy,
    BusyNotice,
    Denied,
    Deny,
    DenyAll,
    Error,
    GuestAway,
    GuestBack,
    GuestHeld,
    GuestLeft,
    Held,
    Hello,
    Hold,
    HostMessage,
    HostStatus,
    JoinRequest,
    Knock,
    LobbyPage,
    Message,
    NewMeeting,
    Pong,
    Position,
    Presence,
    PresenceChanged,
    RaidNotice,
    Refresh,
    Resolved,
    Resume,
    SendMessage,
    SettingsChanged,
    TimedOut,
    UpdateSettings,
    Waiting,
    Welcome,
    parse,
)

# -- client -> server -------------------------------------------------------------------


def test_parse_host_frames() -> None:
    msg = parse({"type": "admit", "guest": "g1", "ref": "r1", "extra": 1}, HOST_FRAMES)
    assert msg == Admit(guest="g1", ref="r1")
    assert msg.to_map() == {"type": "admit", "guest": "g1", "ref": "r1"}


def test_presence_meeting_validated() -> None:
    msg = parse(
        {
            "type": "presence",
            "state": "in_meeting",
            "meeting": {"id": "m1", "url": "https://x.test/m1"},
        },
        HOST_FRAMES,
    )
    assert isinstance(msg, Presence) and msg.meeting == {"id": "m1", "url": "https://x.test/m1"}
    with pytest.raises(BadMessage):
        parse(
            {
                "type": "presence",
                "state": "in_meeting",
                "meeting": {"id": "m1", "url": "javascript:alert(1)"},
            },
            HOST_FRAMES,
        )


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"type": 3},
        {"type": "nope"},
        {"type": "admit"},
        {"type": "admit", "guest": ""},
        {"type": "admit", "guest": 5},
        {"type": "presence", "state": "sleeping"},
        {"type": "admit", "guest": "g", "ref": True},
        {"type": "admit", "guest": "g", "ref": "x" * 65},
        {"type": "admit", "guest": "g", "ref": [1]},
        {"type": "message", "guest": "g", "text": "x" * 1001},
        {"type": "deny", "guest": "g", "block": "false"},
        {"type": "deny", "guest": "g", "block": 0},
        {"type": "settings", "settings": [1]},
        {"type": "settings"},
    ],
)
def test_bad_host_frames(raw: dict[str, Any]) -> None:
    with pytest.raises(BadMessage):
        parse(raw, HOST_FRAMES)


def test_knock() -> None:
    msg = parse({"type": "knock", "name": "  Ann  ", "options": {"title": "x"}}, GUEST_FRAMES)
    assert msg == Knock(name="Ann", options={"title": "x"})
    with pytest.raises(BadMessage):
        parse({"type": "knock", "name": "   "}, GUEST_FRAMES)
    with pytest.raises(BadMessage):
        parse({"type": "knock", "name": "Ann", "options": [1]}, GUEST_FRAMES)
    with pytest.raises(BadMessage):
        parse({"type": "admit", "guest": "g"}, GUEST_FRAMES)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Admit(guest=""), "guest"),
        (lambda: Admit(guest=5), "guest"),  # type: ignore[arg-type]
        (lambda: Admit(guest=None), "guest"),  # type: ignore[arg-type]
        (lambda: Admit(guest="g", ref=True), "ref"),
        (lambda: Hello(token=" "), "token"),
        (lambda: Presence(state="asleep"), "state"),
        (lambda: Presence(state="in_meeting", meeting={"url": "https://x.test"}), "meeting.id"),
        (lambda: NewMeeting(guest="g", title="t" * 201), "title"),
        (lambda: Busy(guest="g", message="m" * 501), "message"),
        (lambda: Deny(guest="g", block="false"), "block"),  # type: ignore[arg-type]
        (lambda: Deny(guest="g", block=1), "block"),  # type: ignore[arg-type]
        (lambda: SendMessage(guest="g", text=""), "text"),
        (lambda: UpdateSettings(settings=[("a", 1)]), "settings"),  # type: ignore[arg-type]
        (lambda: Knock(name="   "), "name"),
        (lambda: Knock(name="Ann", email=3), "email"),  # type: ignore[arg-type]
        (lambda: Knock(name="Ann", options="title=x"), "options"),  # type: ignore[arg-type]
        (lambda: Resume(resume="r" * 257), "resume"),
    ],
)
def test_constructors_validate(build: Any, field: str) -> None:
    """A message that exists is valid: building a bad one fails as parsing one does."""
    with pytest.raises(BadMessage, match=re.escape(f"'{field}'")):
        build()


def test_constructor_normalises_like_parse() -> None:
    assert Knock(name="  Ann ") == parse({"type": "knock", "name": "  Ann "}, GUEST_FRAMES)
    assert Knock(name="  Ann ").name == "Ann"
    assert UpdateSettings().settings == {}
    assert Deny(guest="g", block=False).to_map() == {"type": "deny", "guest": "g", "block": False}


def test_ref_for_every_type_that_carries_one() -> None:
    for table in (HOST_FRAMES, GUEST_FRAMES, TO_HOST, TO_GUEST):
        for cls in table.values():
            if "ref" not in {f.name for f in fields(cls)}:
                continue
            raw = {k: v for k, v in _valid_map(cls).items() if k != "ref"}
            assert parse({**raw, "ref": 7}, table).reference == 7
            assert parse({**raw, "ref": "r-1"}, table).reference == "r-1"
            assert parse(raw, table).reference is None
            with pytest.raises(BadMessage, match="'ref'"):
                parse({**raw, "ref": False}, table)


def test_a_field_without_a_rule_is_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class Sloppy(Message):
        TYPE = "sloppy"
        note: str

    with pytest.raises(TypeError, match=r"Sloppy\.note has no rule"):
        Sloppy(note="x")


# -- server -> client -------------------------------------------------------------------

GUEST: dict[str, Any] = {
    "id": "gAbC123",
    "name": "Ann",
    "email": "ann@example.com",
    "verified": False,
    "label": "Ann (Guest)",
    "knocked_at": 1_700_000_000_000,
    "options": {"title": "Chat", "duration": 30},
}
MEETING: dict[str, Any] = {
    "id": "room-1",
    "url": "https://meet.example/room-1",
    "title": "Chat",
    "duration": 30,
}

SAMPLES: dict[type[Message], Message] = {
    m.__class__: m
    for m in [
        Welcome(
            host="ada",
            state="available",
            waiting=[GUEST, {**GUEST, "id": "g2", "away": True}],
            policy={"locked": False, "bypass": "nobody"},
            name="Ada Lovelace",
            meeting={"id": "m1", "url": "https://x.test/m1", "title": "Weekly"},
            settings={"policy": {"locked": False}},
            waiting_total=2,
        ),
        LobbyPage(guests=[GUEST], more=True, ref=3),
        JoinRequest(guest=GUEST, position=1, host_state="in_meeting"),
        GuestLeft(guest="g1", reason="expired"),
        Resolved(guest="g1", action="new_meeting", meeting=MEETING),
        GuestAway(guest="g1"),
        GuestBack(guest="g1"),
        PresenceChanged(state="in_meeting", meeting={"id": "m1"}),
        SettingsChanged(settings={"name": "Ada King"}),
        Ack(ref=7),
        Error(code="already_resolved", message="this guest was already answered", ref="r1"),
        Pong(ref="p-1"),
        Waiting(
            guest="g1",
            resume="g1~secret",
            position=2,
            host_online=True,
            ignored=["region"],
            host_name="Ada Lovelace",
            host_notified=False,
        ),
        Position(position=1),
        HostStatus(online=True, state="in_meeting"),
        Admitted(mode="merge", meeting=MEETING),
        BusyNotice(message="call me later"),
        Denied(),
        HostMessage(text="Two minutes, please"),
        GuestHeld(guest="g1", held={"message": "In a call", "estimate_s": 600, "until": 9}),
        RaidNotice(count=37, window_s=60, until=1_795_241_290_956, autolock=False),
        Held(message="In a call, about 10 minutes", estimate_s=600, until=1_795_241_290_956),
        TimedOut(message="Sorry, try again tomorrow"),
    ]
}


def _valid_map(cls: type[Message]) -> dict[str, Any]:
    sample = SAMPLES.get(cls)
    if sample is not None:
        return sample.to_map()
    required = {
        Hello: {"token": "t"},
        Presence: {"state": "away"},
        Admit: {"guest": "g"},
        Knock: {"name": "Ann"},
        Resume: {"resume": "g~s"},
        SendMessage: {"guest": "g", "text": "hi"},
        UpdateSettings: {"settings": {}},
        Refresh: {"token": "t"},
    }.get(cls, {"guest": "g"} if "guest" in {f.name for f in fields(cls)} else {})
    return {"type": cls.TYPE, **required}


def test_every_server_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(TO_HOST.values()) | set(TO_GUEST.values())


@pytest.mark.parametrize("sample", list(SAMPLES.values()), ids=lambda m: m.TYPE)
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_server_types_round_trip(sample: Message, codec: str) -> None:
    table = TO_HOST if type(sample) in TO_HOST.values() else TO_GUEST
    assert type(sample).from_map(sample.to_map()) == sample
    wire = CODECS[codec].decode(CODECS[codec].encode(sample.to_map()))
    assert parse(wire, table) == sample


def test_to_map_leaves_out_none() -> None:
    assert Denied().to_map() == {"type": "denied"}
    assert Error(code="locked", message="no").to_map() == {
        "type": "error",
        "code": "locked",
        "message": "no",
    }
    assert Resolved(guest="g", action="busy").to_map() == {
        "type": "resolved",
        "guest": "g",
        "action": "busy",
    }


@pytest.mark.parametrize(
    ("cls", "field", "value", "named"),
    [
        (Welcome, "host", "a b", "host"),
        (Welcome, "state", "busy", "state"),
        (Welcome, "waiting", {}, "waiting"),
        (Welcome, "waiting", [{**GUEST, "away": "yes"}], "waiting[0].away"),
        (Welcome, "waiting", [GUEST, {**GUEST, "verified": "false"}], "waiting[1].verified"),
        (Welcome, "policy", {"locked": "no", "bypass": "nobody"}, "policy.locked"),
        (Welcome, "policy", {"locked": False}, "policy"),
        (Welcome, "name", 7, "name"),
        (Welcome, "settings", "all", "settings"),
        (JoinRequest, "guest", "gAbC123", "guest"),
        (JoinRequest, "guest", {**GUEST, "verified": "false"}, "guest.verified"),
        (JoinRequest, "guest", {**GUEST, "knocked_at": True}, "guest.knocked_at"),
        (JoinRequest, "guest", {**GUEST, "options": None}, "guest"),
        (JoinRequest, "position", 0, "position"),
        (JoinRequest, "position", True, "position"),
        (JoinRequest, "position", "1", "position"),
        (JoinRequest, "host_state", "sleeping", "host_state"),
        (GuestLeft, "guest", "", "guest"),
        (GuestLeft, "reason", "kicked", "reason"),
        (Resolved, "action", "ignore", "action"),
        (Resolved, "meeting", {**MEETING, "duration": True}, "meeting.duration"),
        (Resolved, "meeting", {"id": "room-1"}, "meeting"),
        (GuestAway, "guest", 3, "guest"),
        (GuestBack, "guest", ["g"], "guest"),
        (PresenceChanged, "state", "gone", "state"),
        (PresenceChanged, "meeting", {"title": "no id"}, "meeting.id"),
        (SettingsChanged, "settings", [1], "settings"),
        (Ack, "ref", True, "ref"),
        (Error, "code", 5, "code"),
        (Error, "code", "", "code"),
        (Error, "message", None, "message"),
        (Pong, "ref", [1], "ref"),
        (Waiting, "host_online", "true", "host_online"),
        (Waiting, "host_online", 1, "host_online"),
        (Waiting, "position", 0, "position"),
        (Waiting, "resume", None, "resume"),
        (Waiting, "ignored", "region", "ignored"),
        (Waiting, "ignored", ["region", 1], "ignored[1]"),
        (Waiting, "host_name", False, "host_name"),
        (Position, "position", -1, "position"),
        (Position, "position", 1.0, "position"),
        (Admitted, "mode", "busy", "mode"),
        (Admitted, "meeting", {**MEETING, "url": None}, "meeting"),
        (Admitted, "meeting", {**MEETING, "title": 3}, "meeting.title"),
        (BusyNotice, "message", 5, "message"),
        (Denied, "message", ["no"], "message"),
        (HostMessage, "text", "", "text"),
    ],
)
def test_bad_server_value_names_its_field(
    cls: type[Message], field: str, value: Any, named: str
) -> None:
    sample = SAMPLES[cls]
    table = TO_HOST if cls in TO_HOST.values() else TO_GUEST
    # Parsing and building say the same: the field is named ("'type' needs 'field'"
    # when the value is missing).
    named_re = re.escape(f"'{named}'")
    with pytest.raises(BadMessage, match=named_re):
        parse({**sample.to_map(), field: value}, table)
    kwargs = {f.name: getattr(sample, f.name) for f in fields(cls)}
    with pytest.raises(BadMessage, match=named_re):
        cls(**{**kwargs, field: value})


@pytest.mark.parametrize("state", ["available", "in_meeting", "away"])
def test_host_states(state: str) -> None:
    assert JoinRequest(guest=GUEST, position=1, host_state=state).host_state == state
    assert PresenceChanged(state=state).state == state


@pytest.mark.parametrize("reason", ["cancelled", "disconnected", "expired", "timed_out"])
def test_left_reasons(reason: str) -> None:
    assert GuestLeft(guest="g", reason=reason).reason == reason


@pytest.mark.parametrize("action", ["admit", "merge", "new_meeting", "busy", "deny"])
def test_resolved_actions(action: str) -> None:
    assert Resolved(guest="g", action=action).action == action


@pytest.mark.parametrize("mode", ["admit", "merge", "new_meeting"])
def test_admitted_modes(mode: str) -> None:
    assert Admitted(mode=mode, meeting=MEETING).mode == mode


def test_error_code_from_a_newer_server_still_parses() -> None:
    msg = parse({"type": "error", "code": "quota_exceeded", "message": "later"}, TO_GUEST)
    assert msg == Error(code="quota_exceeded", message="later")


def test_enum_members_become_plain_strings() -> None:
    err = Error(code=ErrorCode.LOCKED, message="no")
    assert type(err.code) is str and err.code == "locked"
    assert err.to_map()["code"] == "locked"


def test_hot_path_messages_keep_their_payload() -> None:
    """No copies: the server builds these per knock."""
    guests = [GUEST]
    assert JoinRequest(guest=GUEST, position=3, host_state="away").guest is GUEST
    policy = {"locked": False, "bypass": "nobody"}
    welcome = Welcome(host="h", state="away", waiting=guests, policy=policy)
    assert welcome.waiting is guests
    assert Admitted(mode="admit", meeting=MEETING).meeting is MEETING


def test_field_order_and_keywords_unchanged() -> None:
    """The server builds these by keyword with today's names; positions stay too."""
    expected = {
        Welcome: [
            "host",
            "state",
            "waiting",
            "policy",
            "name",
            "meeting",
            "settings",
            "waiting_total",
        ],
        JoinRequest: ["guest", "position", "host_state"],
        Waiting: [
            "guest",
            "resume",
            "position",
            "host_online",
            "ignored",
            "host_name",
            "host_notified",  # an addition, last: the others keep their places
        ],
        Resolved: ["guest", "action", "meeting"],
        Error: ["code", "message", "ref"],
        Deny: ["guest", "message", "block", "ref"],
        Knock: ["name", "email", "token", "options", "session", "ref"],
    }
    for cls, names in expected.items():
        assert [f.name for f in fields(cls)] == names


def test_server_messages_parse() -> None:
    msg = parse(
        {
            "type": "welcome",
            "host": "h",
            "state": "available",
            "waiting": [],
            "policy": {"locked": False, "bypass": "nobody"},
        },
        TO_HOST,
    )
    assert isinstance(msg, Welcome) and msg.host == "h"
    assert parse({"type": "busy"}, TO_GUEST).type == "busy"
    assert parse({"type": "busy", "guest": "g"}, HOST_FRAMES).type == "busy"


# -- issue 14: hold, deny all, max wait, raids (additions) ----------------------------


def test_hold_and_deny_all_frames() -> None:
    hold = parse(
        {"type": "hold", "guest": "g1", "message": " In a call ", "estimate_s": 600}, HOST_FRAMES
    )
    assert hold == Hold(guest="g1", message="In a call", estimate_s=600)
    assert parse({"type": "hold", "guest": "g1"}, HOST_FRAMES) == Hold(guest="g1")
    assert parse({"type": "deny_all", "message": "Full today"}, HOST_FRAMES) == DenyAll(
        message="Full today"
    )
    assert parse({"type": "deny_all"}, HOST_FRAMES) == DenyAll()


@pytest.mark.parametrize("estimate", [-1, True, "600", 24 * 3600 + 1, 1.5])
def test_a_hold_estimate_is_whole_seconds_up_to_a_day(estimate: Any) -> None:
    with pytest.raises(BadMessage, match="estimate_s"):
        Hold(guest="g1", estimate_s=estimate)


def test_a_guest_card_may_be_held() -> None:
    held = {**GUEST, "held": {"message": "In a call", "estimate_s": 60, "until": 5}}
    assert JoinRequest(guest=held, position=1, host_state="away").guest["held"]["until"] == 5
    with pytest.raises(BadMessage, match="held"):
        JoinRequest(guest={**GUEST, "held": {"estimate_s": "soon"}}, position=1, host_state="away")
