"""Ordering rules of a guest's frames in the Hub (no Redis needed)."""

from __future__ import annotations

from typing import Any, cast

from protocol.messages import Admitted, BusyNotice, HostMessage, Message
from server.lobby.connection import Connection
from server.lobby.hub import GuestSession


class Recorder:
    """Stands in for a socket's Connection: records what would be written."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    def send(self, message: Message | dict[str, Any]) -> None:
        frame = message.to_map() if isinstance(message, Message) else message
        self.frames.append(
            frame["type"] if frame["type"] != "position" else ("position", frame["position"])
        )

    def close(self, code: int = 1000) -> None:
        self.frames.append(("close", code))


def _session() -> tuple[GuestSession, Recorder]:
    rec = Recorder()
    return GuestSession("h", cast(Connection, rec), "c1", guest="g1"), rec


def test_outcome_before_waiting_is_held_until_placed() -> None:
    session, rec = _session()
    session.deliver(HostMessage(text="hi"))
    meeting = {"id": "r", "url": "https://m/r", "title": "T", "duration": 30}
    session.deliver(Admitted(mode="admit", meeting=meeting), close=True)
    assert rec.frames == []
    rec.send({"type": "waiting"})
    session.set_place(score=10, position=1, since=10, host_online=True)
    assert rec.frames == ["waiting", "message", "admitted", ("close", 1000)]


def test_removals_before_placement_apply_after_waiting() -> None:
    session, rec = _session()
    session.departed([(11, 5)])  # someone ahead left after our knock
    session.departed([(9, 4)])  # before our knock: already counted
    rec.send({"type": "waiting"})
    session.set_place(score=10, position=3, since=10, host_online=True)
    assert rec.frames == ["waiting", ("position", 2)]
    session.departed([(12, 20)])  # someone behind: no change
    assert rec.frames[-1] == ("position", 2)


def test_many_departures_make_one_position_frame() -> None:
    session, rec = _session()
    session.set_place(score=100, position=60, since=100, host_online=True)
    departures = sorted([(101 + i, i) for i in range(50)] + [(160, 150)], key=lambda d: d[1])
    session.departed(departures)
    assert rec.frames == [("position", 10)]  # 50 ahead left, one behind did not count


def test_a_position_never_drops_below_one() -> None:
    session, rec = _session()
    session.set_place(score=10, position=2, since=10, host_online=True)
    session.departed([(11 + i, i) for i in range(5)])
    assert rec.frames == [("position", 1)]


def test_after_placement_frames_go_straight_out() -> None:
    session, rec = _session()
    session.set_place(score=3, position=1, since=3, host_online=True)
    session.deliver(BusyNotice(), close=True)
    assert rec.frames == ["busy", ("close", 1000)]


async def test_a_round_over_a_big_lobby_moves_everyone_in_slices() -> None:
    """A position round over more guests than one slice: it runs over several
    loop passes (the loop is never held for the whole lobby) and leaves every
    place exact, each guest with one frame."""
    import asyncio

    from server.lobby.hub import POSITION_SLICE, Hub
    from server.metrics import Metrics

    hub = Hub(Metrics(enabled=False), position_interval=0.0)
    count = 2 * POSITION_SLICE + 50
    recorders: list[Recorder] = []
    for i in range(count):
        rec = Recorder()
        session = GuestSession("h", cast(Connection, rec), f"c{i}", guest=f"g{i}")
        session.set_place(score=100 + i, position=i + 1, since=10, host_online=True)
        hub.add_guest(session)
        recorders.append(rec)
    hub._departures["h"] = [(11, 1), (12, 2), (13, 3)]  # three ahead of everyone left
    hub._schedule_positions("h")
    passes = 0
    while not recorders[-1].frames and passes < 50:  # bounded
        await asyncio.sleep(0)
        passes += 1
    assert passes >= 3  # the round took several loop passes
    for i, rec in enumerate(recorders):
        moved = max(1, i + 1 - 3)
        assert rec.frames == ([] if moved == i + 1 else [("position", moved)]), i


async def test_a_host_status_reaches_only_the_guests_told_otherwise_in_slices() -> None:
    """host_status: one frame per guest for whom it is news, none for a repeat,
    none before ``waiting``; a big lobby hears it over several loop passes."""
    import asyncio

    from server.lobby.hub import POSITION_SLICE, Hub
    from server.metrics import Metrics

    hub = Hub(Metrics(enabled=False))
    count = 2 * POSITION_SLICE + 10
    recorders: list[Recorder] = []
    for i in range(count):
        rec = Recorder()
        session = GuestSession("h", cast(Connection, rec), f"c{i}", guest=f"g{i}")
        session.set_place(score=i, position=i + 1, since=0, host_online=i % 2 == 0)
        hub.add_guest(session)
        recorders.append(rec)
    unplaced = Recorder()
    hub.add_guest(GuestSession("h", cast(Connection, unplaced), "cx", guest="gx"))

    hub.host_status("h", True, "available")
    passes = 0
    while not recorders[-1].frames and passes < 50:  # bounded
        await asyncio.sleep(0)
        passes += 1
    assert passes >= 2  # the slices took loop passes
    for i, rec in enumerate(recorders):  # the odd ones were told "offline"
        assert rec.frames == ([] if i % 2 == 0 else ["host_status"]), i
    assert unplaced.frames == []  # its waiting will carry the status

    hub.host_status("h", True, "available")  # the same read again: nothing
    for _ in range(5):
        await asyncio.sleep(0)
    assert all(len(rec.frames) == (i % 2) for i, rec in enumerate(recorders))

    hub.host_status("h", True, "away")  # news for everyone
    for _ in range(10):
        await asyncio.sleep(0)
    assert all(rec.frames[-1] == "host_status" for rec in recorders)
    assert all(len(rec.frames) == 1 + (i % 2) for i, rec in enumerate(recorders))
