"""The doorbell events: one encoder and decoder, typed values."""

from __future__ import annotations

import msgpack
import pytest

from protocol import events
from protocol.errors import BadMessage

SAMPLES: list[events.Event] = [
    events.Knocked(ev=3, position=2, host_state="available", guest={"id": "g1", "name": "A"}),
    events.Left(ev=4, guest="g1", score=3, reason="expired"),
    events.Resolved(ev=5, guest="g1", score=3, action="deny", outcome={"type": "denied"}),
    events.WentAway(ev=0, guest="g1"),
    events.Resumed(ev=0, guest="g1", conn="c2"),
    events.PresenceSet(ev=0, state="in_meeting", meeting={"id": "m"}),
    events.PresenceSet(ev=0, state="away", meeting=None),
    events.SettingsSet(ev=0, settings={"policy": {"locked": True}}),
    events.Said(ev=0, guest="g1", text="hello"),
    events.HeldSet(ev=0, guest="g1", held={"message": "In a call", "estimate_s": 600}),
    events.Dismissed(ev=6, guest="g1", score=3, reason="timed_out", outcome={"type": "timed_out"}),
    events.Raid(ev=0, count=37, since=1, until=60_001, autolock=True),
]


@pytest.mark.parametrize("event", SAMPLES, ids=[type(e).__name__ for e in SAMPLES])
def test_round_trip(event: events.Event) -> None:
    assert events.decode(events.encode(event)) == event


def test_the_stream_is_what_lua_packs() -> None:
    # cmsgpack.pack('knock', ev, position, state) .. info
    data = b"".join(msgpack.packb(x) for x in ("knock", 7, 1, "away", {"id": "g"}))
    assert events.decode(data) == events.Knocked(7, 1, "away", {"id": "g"})
    no_meeting = b"".join(msgpack.packb(x) for x in ("presence", 0, "available", False))
    assert events.decode(no_meeting) == events.PresenceSet(0, "available", None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        msgpack.packb("nope") + msgpack.packb(0),
        msgpack.packb("left") + msgpack.packb(1),
        b"\xc1",
    ],
)
def test_bad_events_raise_bad_message(data: bytes) -> None:
    with pytest.raises(BadMessage):
        events.decode(data)


def test_every_kind_is_known_to_the_scripts() -> None:
    kinds = events.lua_kinds()
    assert sorted(kinds.values()) == sorted(cls.KIND for cls in events.EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=[type(e).__name__ for e in SAMPLES])
def test_the_kind_is_read_off_the_first_item(event: events.Event) -> None:
    assert events.kind_of(events.encode(event)) == event.KIND


@pytest.mark.parametrize("data", [b"", b"\xa5kno", b"\xc1", msgpack.packb(7), b"\xa2\xff\xfe"])
def test_no_kind_for_bytes_that_do_not_start_with_one(data: bytes) -> None:
    assert events.kind_of(data) is None


@pytest.mark.parametrize("extra", [-1, 1])
def test_an_event_with_a_field_too_many_or_too_few_says_how_many_it_needs(extra: int) -> None:
    items = ["left", 1, "g1", 3, "cancelled"]  # kind and its four fields
    items = items[:extra] if extra < 0 else [*items, "more"]
    with pytest.raises(BadMessage, match="'left' event needs 4 fields"):
        events.decode(b"".join(msgpack.packb(x) for x in items))


def test_a_truncated_item_is_undecodable_not_a_crash() -> None:
    data = events.encode(events.Left(1, "g1", 3, "cancelled"))
    with pytest.raises(BadMessage):
        events.decode(data[:-2])
    with pytest.raises(BadMessage, match="undecodable"):
        events.decode(msgpack.packb("left") + b"\xc1")
