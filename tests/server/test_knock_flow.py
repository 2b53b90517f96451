"""The knock path end to end on one process: knock, hear, answer, go."""

from __future__ import annotations

from typing import Any

import pytest

from foyer_client import GuestClient, HostClient, NotInMeeting, UnknownGuest
from protocol.messages import (
    Admitted,
    BusyNotice,
    Denied,
    GuestLeft,
    HostMessage,
    JoinRequest,
    Pong,
    Position,
    Resolved,
)
from tests.support import FoyerProcess


async def test_knock_reaches_every_device_and_admit_sends_guest(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as d1,
        HostClient(foyer.ws_url, host["token"], codec="json") as d2,
    ):
        assert d1.welcome.host == host["id"] and d1.welcome.waiting == []
        assert d1.welcome.name == "Ada Lovelace"
        async with GuestClient(
            foyer.ws_url, host["slug"], name="Ann", email="ann@example.com"
        ) as guest:
            assert guest.waiting.position == 1 and guest.waiting.host_online is True
            assert guest.waiting.resume and guest.waiting.guest
            jr1 = await d1.wait_for(JoinRequest)
            jr2 = await d2.wait_for(JoinRequest)
            assert isinstance(jr1, JoinRequest) and jr1 == jr2
            g = jr1.guest
            assert g["id"] == guest.waiting.guest and g["label"] == "Ann (Guest)"
            assert g["verified"] is False and g["email"] == "ann@example.com"
            assert "resume" not in g and jr1.position == 1 and jr1.host_state == "available"
            await d1.admit(g["id"])
            out = await guest.wait_for(Admitted)
            assert isinstance(out, Admitted) and out.mode == "admit"
            assert out.meeting["url"].startswith("https://meet.jit.si/")
            assert await guest.wait_closed() == 1000
            for device in (d1, d2):
                resolved = await device.wait_for(Resolved)
                assert isinstance(resolved, Resolved)
                assert resolved.action == "admit" and resolved.meeting == out.meeting


@pytest.mark.parametrize(("action", "outcome"), [("busy", BusyNotice), ("deny", Denied)])
async def test_busy_and_deny_reach_guest_and_close(
    foyer: FoyerProcess, host: dict[str, Any], action: str, outcome: type[BusyNotice | Denied]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Bo") as guest,
    ):
        await device.wait_for(JoinRequest)
        await getattr(device, action)(guest.waiting.guest, message="Not today")
        out = await guest.wait_for(outcome)
        assert out.message == "Not today"
        assert await guest.wait_closed() == 1000


async def test_new_meeting_is_unique_and_uses_title(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    urls = set()
    async with HostClient(foyer.ws_url, host["token"]) as device:
        for _ in range(2):
            async with GuestClient(foyer.ws_url, host["slug"], name="Cy") as guest:
                await device.new_meeting(guest.waiting.guest, title="Design review")
                out = await guest.wait_for(Admitted)
                assert isinstance(out, Admitted) and out.mode == "new_meeting"
                assert out.meeting["title"] == "Design review"
                urls.add(out.meeting["url"])
    assert len(urls) == 2


async def test_merge_needs_in_meeting(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Di") as guest,
    ):
        with pytest.raises(NotInMeeting):
            await device.merge(guest.waiting.guest)
        await device.presence(
            "in_meeting", {"id": "weekly-42", "url": "https://meet.example/w42", "title": "Weekly"}
        )
        await device.merge(guest.waiting.guest)
        out = await guest.wait_for(Admitted)
        assert isinstance(out, Admitted) and out.mode == "merge"
        assert out.meeting["id"] == "weekly-42" and out.meeting["url"] == "https://meet.example/w42"


async def test_presence_shown_to_later_knocks(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        await device.presence("in_meeting", {"id": "m-1"})
        async with GuestClient(foyer.ws_url, host["slug"], name="Ed"):
            jr = await device.wait_for(JoinRequest)
            assert isinstance(jr, JoinRequest) and jr.host_state == "in_meeting"
        async with HostClient(foyer.ws_url, host["token"]) as later:
            assert later.welcome.state == "in_meeting"


async def test_message_to_guest(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Flo") as guest,
    ):
        await device.message(guest.waiting.guest, "Two minutes, please")
        line = await guest.wait_for(HostMessage)
        assert line.text == "Two minutes, please"
        with pytest.raises(UnknownGuest):
            await device.message("g-does-not-exist", "hello?")


async def test_positions_move_up_and_cancel_tells_hosts(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="A") as a,
        GuestClient(foyer.ws_url, host["slug"], name="B", codec="json") as b,
        GuestClient(foyer.ws_url, host["slug"], name="C") as c,
    ):
        assert (a.waiting.position, b.waiting.position, c.waiting.position) == (1, 2, 3)
        await a.cancel()
        left = await device.wait_for(GuestLeft)
        assert isinstance(left, GuestLeft)
        assert left.guest == a.waiting.guest and left.reason == "cancelled"
        assert await a.wait_closed() == 1000
        assert (await b.wait_for(Position)).position == 1
        assert (await c.wait_for(Position)).position == 2
        await device.admit(b.waiting.guest)
        assert (await c.wait_for(Position)).position == 1


async def test_late_device_sees_every_waiting_guest_in_order(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        GuestClient(foyer.ws_url, host["slug"], name="First") as g1,
        GuestClient(foyer.ws_url, host["slug"], name="Second") as g2,
    ):
        assert g1.waiting.host_online is False
        async with HostClient(foyer.ws_url, host["token"]) as device:
            ids = [g["id"] for g in device.welcome.waiting]
            assert ids == [g1.waiting.guest, g2.waiting.guest]
            assert [g["name"] for g in device.welcome.waiting] == ["First", "Second"]
            await device.ping()
            # The welcome is the only announcement of these two: no duplicate join_request.
            assert not [m for m in device.pending() if isinstance(m, JoinRequest)]


async def test_ping_pong_with_ref(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        reply = await device.ping()
        assert isinstance(reply, Pong) and reply.ref is not None
    async with GuestClient(foyer.ws_url, host["slug"], name="P") as guest:
        reply = await guest.ping()
        assert isinstance(reply, Pong) and reply.ref is not None
