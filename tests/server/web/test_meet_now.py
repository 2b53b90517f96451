"""Instant meetings (issue 14, point 7): POST /api/meetings makes a unique
meeting per call, and the host setting ``instant_personal_room`` makes both
Meet now and ``new_meeting`` use the personal room instead."""

from __future__ import annotations

from typing import Any

import httpx

from foyer_client import GuestClient, HostClient
from protocol.messages import Admitted, JoinRequest
from tests.support import FoyerProcess


def _as(foyer: FoyerProcess, bearer: str) -> httpx.Client:
    return httpx.Client(
        base_url=foyer.http_url, timeout=10, headers={"Authorization": f"Bearer {bearer}"}
    )


async def _admitted(foyer: FoyerProcess, host: dict[str, Any], action: str) -> dict[str, Any]:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Cy") as guest,
    ):
        await device.wait_for(JoinRequest)
        await getattr(device, action)(guest.waiting.guest)
        out = await guest.wait_for(Admitted)
        assert isinstance(out, Admitted)
        meeting: dict[str, Any] = out.meeting
        return meeting


async def test_instant_meetings_can_use_the_personal_room(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    personal = await _admitted(foyer, host, "admit")
    with _as(foyer, host["token"]) as api:  # the host's own token, as the console sends
        first = api.post("/api/meetings", json={"host": host["id"], "title": "Standup"})
        second = api.post("/api/meetings", json={"host": host["id"]})
        assert first.status_code == 201 and second.status_code == 201
        assert first.json()["title"] == "Standup"
        assert first.json()["url"] != second.json()["url"] != personal["url"]
        assert first.json()["join_link"] != second.json()["join_link"]
        fresh = await _admitted(foyer, host, "new_meeting")
        assert fresh["url"] != personal["url"]

        changed = api.patch(
            f"/api/hosts/{host['id']}/settings", json={"instant_personal_room": True}
        )
        assert changed.status_code == 200
        assert changed.json()["settings"]["instant_personal_room"] is True
        now = api.post("/api/meetings", json={"host": host["id"], "title": "Quick one"})
        assert now.status_code == 201
        assert now.json()["url"] == personal["url"]
        assert now.json()["join_link"] == host["link"]  # guests knock on the personal link
        assert now.json()["status"] == "personal_room"
        reused = await _admitted(foyer, host, "new_meeting")
        assert reused["url"] == personal["url"]

        api.patch(f"/api/hosts/{host['id']}/settings", json={"instant_personal_room": False})
        assert (await _admitted(foyer, host, "new_meeting"))["url"] != personal["url"]
