"""Host replies through real ``foyer serve`` processes: what a losing reply
must not do."""

from __future__ import annotations

from typing import Any

import pytest

from foyer_client import GuestClient, HostClient
from protocol.errors import AlreadyResolved, UnknownGuest
from protocol.messages import JoinRequest
from tests.support import FoyerProcess


async def test_deny_with_block_blocks_only_if_the_deny_wins(
    foyer: FoyerProcess, foyer2: FoyerProcess, host: dict[str, Any]
) -> None:
    """Regression: the block used to be written before the deny was applied, so a
    deny that lost to another device's admit still blocked the guest's email."""
    async with (
        HostClient(foyer.ws_url, host["token"]) as first,
        HostClient(foyer2.ws_url, host["token"]) as second,
        GuestClient(foyer.ws_url, host["slug"], name="Eve", email="eve@example.com") as guest,
    ):
        gid = guest.waiting.guest
        await first.wait_for(JoinRequest)
        await second.wait_for(JoinRequest)
        await first.admit(gid)
        with pytest.raises(AlreadyResolved):
            await second.deny(gid, block=True)
    with foyer.api() as api:
        policy = api.get(f"/api/hosts/{host['id']}").json()["settings"]["policy"]
    assert policy["block"] == []


async def test_a_reply_to_an_unknown_guest_changes_nothing(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        with pytest.raises(UnknownGuest):
            await device.deny("g-nobody", block=True)
        assert (await device.ping()).type == "pong"
    with foyer.api() as api:
        policy = api.get(f"/api/hosts/{host['id']}").json()["settings"]["policy"]
    assert policy["block"] == []
