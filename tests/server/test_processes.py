"""Two processes on one Redis behave as one server; exactly one reply wins."""

from __future__ import annotations

import asyncio
from typing import Any

from foyer_client import GuestClient, HostClient
from protocol.messages import Admitted, Denied, HostMessage, JoinRequest, Resolved
from tests.support import FoyerProcess, try_reply


async def test_host_on_one_guest_on_other(
    foyer: FoyerProcess, foyer2: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as d1,
        HostClient(foyer2.ws_url, host["token"]) as d2,
    ):
        async with GuestClient(foyer2.ws_url, host["slug"], name="Across") as guest:
            jr1 = await d1.wait_for(JoinRequest)
            jr2 = await d2.wait_for(JoinRequest)
            assert jr1 == jr2
            await d1.message(guest.waiting.guest, "hi from process one")
            assert (await guest.wait_for(HostMessage)).type == "message"
            await d1.admit(guest.waiting.guest)
            assert (await guest.wait_for(Admitted)).type == "admitted"
            assert (await d2.wait_for(Resolved)).type == "resolved"


async def test_store_first_late_device_on_other_process(
    foyer: FoyerProcess, foyer2: FoyerProcess, host: dict[str, Any]
) -> None:
    async with GuestClient(foyer.ws_url, host["slug"], name="Early"):
        async with HostClient(foyer2.ws_url, host["token"]) as device:
            assert [g["name"] for g in device.welcome.waiting] == ["Early"]


async def test_exactly_one_reply_wins_across_devices_and_processes(
    foyer: FoyerProcess, foyer2: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as d1,
        HostClient(foyer2.ws_url, host["token"]) as d2,
        HostClient(foyer2.ws_url, host["token"], codec="json") as d3,
    ):
        for round_ in range(15):
            async with GuestClient(foyer.ws_url, host["slug"], name=f"R{round_}") as guest:
                gid = guest.waiting.guest
                results = await asyncio.gather(
                    try_reply(d1, "admit", gid),
                    try_reply(d2, "deny", gid),
                    try_reply(d3, "new_meeting", gid),
                )
                assert sorted(results) == [False, False, True]
                outcome = await guest.wait_for(Admitted, Denied)
                winner = ["admit", "deny", "new_meeting"][results.index(True)]
                assert outcome.type == ("denied" if winner == "deny" else "admitted")
                for device in (d1, d2, d3):
                    resolved = await device.wait_for(Resolved)
                    assert resolved.action == winner


async def test_settings_change_reaches_cached_host_on_other_process(
    foyer: FoyerProcess, foyer2: FoyerProcess, host: dict[str, Any]
) -> None:
    async with GuestClient(foyer2.ws_url, host["slug"], name="First") as first:
        assert first.waiting.host_name == "Ada Lovelace"  # foyer2 now caches the host
        with foyer.api() as api:
            r = api.patch(f"/api/hosts/{host['id']}/settings", json={"name": "Ada King"})
            assert r.status_code == 200
        for _ in range(50):  # the settings event crosses Redis to foyer2
            async with GuestClient(foyer2.ws_url, host["slug"], name="Second") as second:
                if second.waiting.host_name == "Ada King":
                    break
            await asyncio.sleep(0.1)
        assert second.waiting.host_name == "Ada King"
