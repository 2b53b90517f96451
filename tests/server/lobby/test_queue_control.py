"""Issue 14 over the wire, against real ``foyer serve`` processes: hold, deny all,
the maximum wait and raid protection (with the deny cool-down)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from foyer_client import (
    AlreadyResolved,
    ConnectionClosed,
    GuestClient,
    HostClient,
    Locked,
    UnknownGuest,
)
from protocol.errors import CloseCode
from protocol.messages import (
    Admitted,
    Denied,
    GuestHeld,
    GuestLeft,
    Held,
    JoinRequest,
    Message,
    RaidNotice,
    Resolved,
    SettingsChanged,
    TimedOut,
    Waiting,
)
from tests.support import FoyerProcess


def _lobby(foyer: FoyerProcess, host: dict[str, Any], **lobby: Any) -> None:
    with foyer.api() as api:
        r = api.patch(f"/api/hosts/{host['id']}/settings", json={"lobby": lobby})
        r.raise_for_status()


def _guest_token(foyer: FoyerProcess, email: str, name: str) -> str:
    with foyer.api() as api:
        r = api.post("/api/guest-tokens", json={"email": email, "name": name})
        assert r.status_code == 201
        return str(r.json()["token"])


# -- hold ---------------------------------------------------------------------------------


async def test_a_held_guest_keeps_its_place_and_every_device_sees_it(
    foyer: FoyerProcess, foyer2: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as d1,
        HostClient(foyer2.ws_url, host["token"], codec="json") as d2,
        GuestClient(foyer.ws_url, host["slug"], name="Ann") as ann,
        GuestClient(foyer2.ws_url, host["slug"], name="Ben") as ben,
    ):
        gid = ann.waiting.guest
        before = int(time.time() * 1000)
        await d1.hold(gid, "In a call", estimate_s=600)
        held = await ann.wait_for(Held)
        assert held.message == "In a call" and held.estimate_s == 600
        assert held.until is not None and before + 600_000 <= held.until < before + 610_000
        for device in (d1, d2):  # every device, on either process
            seen = await device.wait_for(GuestHeld)
            assert seen.guest == gid and seen.held["message"] == "In a call"
            assert seen.held["until"] == held.until
        # A device that connects later sees the guest as held, still first.
        async with HostClient(foyer2.ws_url, host["token"]) as late:
            first, second = late.welcome.waiting
            assert first["id"] == gid and first["held"]["estimate_s"] == 600
            assert second["id"] == ben.waiting.guest and "held" not in second
        assert ben.waiting.position == 2
        # A held guest that drops and comes back is still held, in its place.
        await ann.close()
        async with GuestClient(foyer2.ws_url, host["slug"], resume=ann.waiting.resume) as back:
            assert back.waiting.position == 1
            again = await back.wait_for(Held)
            assert again.message == "In a call" and again.until == held.until
            # The host admits later: the hold ends with the wait.
            await d2.admit(gid)
            assert (await back.wait_for(Admitted)).mode == "admit"
        assert (await d1.wait_for(Resolved)).guest == gid


async def test_a_backend_can_hold_a_guest_over_http(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Dee") as dee,
    ):
        with foyer.api() as api:
            r = api.post(
                f"/api/hosts/{host['id']}/guests/{dee.waiting.guest}/reply",
                json={"action": "hold", "message": "Wrapping up", "estimate_s": 120},
            )
            assert r.status_code == 200 and r.json()["action"] == "hold"
            bad = api.post(
                f"/api/hosts/{host['id']}/guests/{dee.waiting.guest}/reply",
                json={"action": "hold", "estimate_s": -5},
            )
            assert bad.status_code == 422
        held = await dee.wait_for(Held)
        assert held.message == "Wrapping up" and held.estimate_s == 120
        assert (await device.wait_for(GuestHeld)).held["estimate_s"] == 120


async def test_a_hold_needs_a_waiting_guest(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Cy") as cy,
    ):
        with pytest.raises(UnknownGuest):
            await device.hold("g-nobody", "One moment")
        await device.hold(cy.waiting.guest)  # no line, no estimate: still a hold
        held = await cy.wait_for(Held)
        assert held.message is None and held.estimate_s is None and held.until is None
        await device.deny(cy.waiting.guest)
        with pytest.raises(AlreadyResolved):
            await device.hold(cy.waiting.guest, "too late")


# -- deny all -----------------------------------------------------------------------------


async def test_deny_all_turns_every_guest_away_with_the_line(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="One") as one,
        GuestClient(foyer.ws_url, host["slug"], name="Two") as two,
        GuestClient(foyer.ws_url, host["slug"], name="Three") as three,
    ):
        await device.hold(two.waiting.guest, "Soon")  # a held guest is denied too
        await device.deny_all("Full today, sorry")
        for guest in (one, two, three):
            out = await guest.wait_for(Denied)
            assert out.message == "Full today, sorry"
        denied = {(await device.wait_for(Resolved)).guest for _ in range(3)}
        assert denied == {g.waiting.guest for g in (one, two, three)}
        async with HostClient(foyer.ws_url, host["token"]) as late:
            assert late.welcome.waiting == []
        await device.deny_all()  # nobody waits: nothing to do, still acked


# -- maximum wait -------------------------------------------------------------------------


async def test_an_unanswered_guest_times_out_politely_and_a_held_one_does_not(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    _lobby(foyer, host, max_wait_s=2, max_wait_message="Sorry, I could not make it today")
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Held") as held,
    ):
        await device.hold(held.waiting.guest, "Two minutes")  # well within its 2 s
        async with GuestClient(foyer.ws_url, host["slug"], name="Left alone") as alone:
            # The held guest knocked first, so its maximum wait ran out first: had
            # the hold not cleared it, it would have timed out before this one.
            out = await alone.wait_for(TimedOut)
            assert out.message == "Sorry, I could not make it today"
            assert await alone.wait_closed() == CloseCode.NORMAL
        left = await device.wait_for(GuestLeft)
        assert left.guest == alone.waiting.guest and left.reason == "timed_out"
        waiting = await device.all_waiting()
        assert [g["id"] for g in waiting] == [held.waiting.guest]
        assert [m for m in held.pending() if isinstance(m, TimedOut)] == []
        # A late resume of the timed-out guest still gets its outcome.
        async with GuestClient(foyer.ws_url, host["slug"], resume=alone.waiting.resume) as back:
            assert (await back.wait_for(TimedOut)).message == out.message


# -- raids --------------------------------------------------------------------------------


async def _messages_until(device: HostClient, knocks: int) -> list[Message]:
    """The device's messages up to its ``knocks``-th join_request."""
    seen: list[Message] = []
    while sum(isinstance(m, JoinRequest) for m in seen) < knocks:
        seen.append(await device.recv())
    return seen


async def test_a_raid_makes_one_collapsed_notice(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    _lobby(foyer, host, raid_threshold=3)
    async with HostClient(foyer.ws_url, host["token"]) as device:
        guests = [GuestClient(foyer.ws_url, host["slug"], name=f"Raider {n}") for n in range(6)]
        try:
            for guest in guests:
                await guest.__aenter__()
            seen = await _messages_until(device, 6)
        finally:
            for guest in guests:
                await guest.close()
    kinds = [type(m).__name__ for m in seen]
    # One notice, ahead of the knock that went over the threshold.
    assert kinds == ["JoinRequest"] * 3 + ["RaidNotice"] + ["JoinRequest"] * 3
    notice = seen[3]
    assert isinstance(notice, RaidNotice)
    assert notice.count == 4 and notice.window_s == 60 and notice.autolock is False
    assert notice.until > int(time.time() * 1000)


async def test_raid_protection_can_be_turned_off(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    _lobby(foyer, host, raid_threshold=0)
    async with HostClient(foyer.ws_url, host["token"]) as device:
        async with (
            GuestClient(foyer.ws_url, host["slug"], name="A"),
            GuestClient(foyer.ws_url, host["slug"], name="B"),
        ):
            seen = await _messages_until(device, 2)
            await device.ping()  # anything sent with the knocks is in the inbox now
            seen += device.pending()
    assert not [m for m in seen if isinstance(m, RaidNotice)]
    _lobby(foyer, host, raid_threshold=1)  # the same two knocks would have been a raid
    async with HostClient(foyer.ws_url, host["token"]) as device:
        async with (
            GuestClient(foyer.ws_url, host["slug"], name="C"),
            GuestClient(foyer.ws_url, host["slug"], name="D"),
        ):
            assert (await device.wait_for(RaidNotice)).count == 2


async def test_a_raid_can_lock_the_link(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    _lobby(foyer, host, raid_threshold=2, raid_autolock=True)
    async with HostClient(foyer.ws_url, host["token"]) as device:
        async with (
            GuestClient(foyer.ws_url, host["slug"], name="R1"),
            GuestClient(foyer.ws_url, host["slug"], name="R2"),
            GuestClient(foyer.ws_url, host["slug"], name="R3"),
        ):
            notice = await device.wait_for(RaidNotice)
            assert notice.count == 3 and notice.autolock is True
            changed = await device.wait_for(SettingsChanged)
            assert changed.settings["policy"]["locked"] is True
            with pytest.raises(Locked) as err:
                async with GuestClient(foyer.ws_url, host["slug"], name="R4"):
                    pass
            assert err.value.close_code == CloseCode.LOCKED


async def test_a_denied_identity_cools_down(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    _lobby(foyer, host, deny_cooldown_s=60)
    token = _guest_token(foyer, "vera@example.com", "Vera")
    async with HostClient(foyer.ws_url, host["token"]) as device:
        async with GuestClient(foyer.ws_url, host["slug"], name="Pest") as pest:
            await device.deny(pest.waiting.guest, "No")
            assert (await pest.wait_for(Denied)).message == "No"
        # The same address, under another name: refused as quietly as a block.
        async with GuestClient(foyer.ws_url, host["slug"], name="Pest again") as again:
            out = await again.wait_for(Denied, Waiting)
            assert isinstance(out, Denied) and out.message is None
            with pytest.raises(ConnectionClosed):
                await again.recv()
        # A verified guest is its own identity: the address's deny is not hers.
        async with GuestClient(foyer.ws_url, host["slug"], name="V", token=token) as vera:
            assert vera.waiting.position == 1
            await device.deny(vera.waiting.guest)
        async with GuestClient(foyer.ws_url, host["slug"], name="V", token=token) as vera2:
            assert isinstance(await vera2.wait_for(Denied, Waiting), Denied)
        # deny_all starts the cool-down of every guest it turns away.
        wes_token = _guest_token(foyer, "wes@example.com", "Wes")
        async with GuestClient(foyer.ws_url, host["slug"], name="W", token=wes_token) as wes:
            await device.deny_all("Not today")
            assert (await wes.wait_for(Denied)).message == "Not today"
        async with GuestClient(foyer.ws_url, host["slug"], name="W", token=wes_token) as wes2:
            out = await wes2.wait_for(Denied, Waiting)
            assert isinstance(out, Denied) and out.message is None
        await device.ping()
        knocks = [m for m in device.pending() if isinstance(m, JoinRequest)]
        assert len(knocks) == 3  # the cooled-down knocks never reached the host
