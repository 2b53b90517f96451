from __future__ import annotations

from typing import Any

import pytest

from protocol.errors import BadMessage
from protocol.messages import (
    GUEST_FRAMES,
    HOST_FRAMES,
    TO_GUEST,
    TO_HOST,
    Admit,
    Knock,
    Presence,
    Welcome,
    parse,
)


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
