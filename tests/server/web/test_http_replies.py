"""Answering from anywhere over HTTP (issue 12, point 2): an integrator's backend
reads the lobby and replies through the same script as the devices, so the
first reply wins across devices and the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from foyer_client import GuestClient, HostClient
from protocol.errors import AlreadyResolved
from protocol.messages import Admitted, HostMessage, JoinRequest, Resolved
from tests.support import FoyerProcess


def _http(foyer: FoyerProcess, bearer: str) -> httpx.Client:
    return httpx.Client(
        base_url=foyer.http_url, timeout=10, headers={"Authorization": f"Bearer {bearer}"}
    )


async def test_the_lobby_and_a_reply_over_http(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Ann") as ann,
        GuestClient(foyer.ws_url, host["slug"], name="Ben") as ben,
    ):
        with _http(foyer, host["token"]) as api:  # the host's own token
            lobby = api.get(f"/api/hosts/{host['id']}/waiting").json()
            assert [g["id"] for g in lobby["guests"]] == [ann.waiting.guest, ben.waiting.guest]
            assert lobby["more"] is False
            page = api.get(f"/api/hosts/{host['id']}/waiting", params={"limit": 1}).json()
            assert len(page["guests"]) == 1 and page["more"] is True
            said = api.post(
                f"/api/hosts/{host['id']}/guests/{ann.waiting.guest}/reply",
                json={"action": "message", "text": "One minute"},
            )
            assert said.status_code == 200
            assert (await ann.wait_for(HostMessage)).text == "One minute"
            r = api.post(
                f"/api/hosts/{host['id']}/guests/{ann.waiting.guest}/reply",
                json={"action": "admit"},
            )
            assert r.status_code == 200
        assert (await ann.wait_for(Admitted)).mode == "admit"
        resolved = await device.wait_for(Resolved)
        assert resolved.guest == ann.waiting.guest and resolved.action == "admit"
        with pytest.raises(AlreadyResolved):  # the API won: the device's reply loses
            await device.deny(ann.waiting.guest)
        await device.busy(ben.waiting.guest)  # the device wins this one ...
        with foyer.api() as api:  # ... so the API's loses (with the API key)
            late = api.post(
                f"/api/hosts/{host['id']}/guests/{ben.waiting.guest}/reply",
                json={"action": "admit"},
            )
        assert late.status_code == 409 and late.json()["code"] == "already_resolved"


def test_replies_need_the_api_key_or_this_hosts_token(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    other = foyer.create_host("Someone Else")
    url = f"/api/hosts/{host['id']}/waiting"
    for bearer in (other["token"], "not-a-token", "-"):
        with _http(foyer, bearer) as api:
            r = api.get(url)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    "body",
    [{"action": "wave"}, {"action": "message"}, {"action": "admit", "extra": 1}, {}],
)
def test_a_bad_reply_is_refused_with_a_reason(
    foyer: FoyerProcess, host: dict[str, Any], body: dict[str, Any]
) -> None:
    with foyer.api() as api:
        r = api.post(f"/api/hosts/{host['id']}/guests/g-nobody/reply", json=body)
    assert r.status_code == 422 and r.json()["code"] == "invalid"


def test_a_reply_to_nobody_is_404(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    with foyer.api() as api:
        r = api.post(f"/api/hosts/{host['id']}/guests/g-nobody/reply", json={"action": "busy"})
    assert r.status_code == 404 and r.json()["code"] == "unknown_guest"


async def test_the_device_hears_of_a_guest_the_api_saw(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with HostClient(foyer.ws_url, host["token"]) as device:
        async with GuestClient(foyer.ws_url, host["slug"], name="Cy") as cy:
            assert (await device.wait_for(JoinRequest)).guest["id"] == cy.waiting.guest
