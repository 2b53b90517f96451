"""A waiting guest hears when its host comes online, changes state or goes
offline (addition ``host_status``): the page said "offline" for the whole wait
of a guest who knocked before the host opened the console."""

from __future__ import annotations

from typing import Any

from foyer_client import GuestClient, HostClient, HostStatus
from tests.support import FoyerProcess

# The host's status is read every 2 s (server.node.HOST_STATUS_INTERVAL); a
# loaded machine gets the margin.
WAIT = 20


async def test_the_guest_hears_the_host_come_change_and_go(
    foyer: FoyerProcess, foyer2: FoyerProcess, host: dict[str, Any]
) -> None:
    # The guest on one process, the host's devices on the other: it crosses Redis.
    async with GuestClient(foyer2.ws_url, host["slug"], name="Early Ed") as guest:
        assert guest.waiting.host_online is False
        async with HostClient(foyer.ws_url, host["token"]) as device:
            came = await guest.wait_for(HostStatus, timeout=WAIT)
            assert (came.online, came.state) == (True, "available")
            await device.presence("in_meeting", {"id": "standup"})
            busy = await guest.wait_for(HostStatus, timeout=WAIT)
            assert (busy.online, busy.state) == (True, "in_meeting")
            await device.presence("available")
            back = await guest.wait_for(HostStatus, timeout=WAIT)
            assert (back.online, back.state) == (True, "available")
        gone = await guest.wait_for(HostStatus, timeout=WAIT)
        assert (gone.online, gone.state) == (False, "available")
        # Nothing more: a status is sent when it changes, not every read.
        assert [m for m in guest.pending() if isinstance(m, HostStatus)] == []


async def test_a_guest_told_online_hears_nothing_until_it_changes(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]),
        GuestClient(foyer.ws_url, host["slug"], name="Late Lu") as guest,
    ):
        assert guest.waiting.host_online is True
        try:
            extra = await guest.wait_for(HostStatus, timeout=5)  # over two reads
        except TimeoutError:
            extra = None
        assert extra is None


async def test_a_guest_who_knocks_on_an_away_host_hears_it(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    """The link's info and the guest frames both say away: a guest placed after
    the status was read hears it too (the read alone would not change)."""
    import httpx

    async with HostClient(foyer.ws_url, host["token"]) as device:
        await device.presence("away")
        async with GuestClient(foyer.ws_url, host["slug"], name="First Fay") as first:
            away = await first.wait_for(HostStatus, timeout=WAIT)
            assert (away.online, away.state) == (True, "away")
            async with GuestClient(foyer.ws_url, host["slug"], name="Second Sy") as second:
                later = await second.wait_for(HostStatus, timeout=WAIT)
                assert (later.online, later.state) == (True, "away")
        async with httpx.AsyncClient(timeout=10) as http:
            info = (await http.get(f"{foyer.http_url}/api/links/{host['slug']}")).json()
        assert (info["host_online"], info["host_state"]) == (True, "away")
