"""Link options, host settings, lobby policy and scheduled sessions."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from foyer_client import BadMessage, GuestClient, HostClient, Locked, Unauthorized
from protocol.messages import Admitted, Denied, JoinRequest, Resolved, SettingsChanged
from tests.support import FoyerProcess


def _patch(foyer: FoyerProcess, host: str, body: dict[str, Any]) -> httpx.Response:
    with foyer.api() as api:
        return api.patch(f"/api/hosts/{host}/settings", json=body)


def _guest_token(foyer: FoyerProcess, email: str, name: str | None = None) -> str:
    with foyer.api() as api:
        r = api.post("/api/guest-tokens", json={"email": email, **({"name": name} if name else {})})
        assert r.status_code == 201
        return str(r.json()["token"])


async def test_options_query_knock_and_defaults(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    assert (
        _patch(
            foyer,
            host["id"],
            {"meeting_defaults": {"duration": 50, "recording": "automatic", "region": "eu-west"}},
        ).status_code
        == 200
    )
    rel = str(uuid.uuid4())
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(
            foyer.ws_url,
            host["slug"],
            name="Opt",
            query={
                "title": "From: the link",
                "duration": "20",
                "announce": "true",
                "relationship": rel,
                "region": "moon",
            },
            options={"duration": 25, "recording": "laser"},
        ) as guest,
    ):
        assert guest.waiting.ignored == ["recording", "region"]
        jr = await device.wait_for(JoinRequest)
        assert isinstance(jr, JoinRequest)
        assert jr.guest["options"] == {
            "title": "Fromthelink",
            "duration": 25,
            "announce": True,
            "autodelete": False,
            "recording": "automatic",
            "region": "eu-west",
            "relationship": rel,
        }
        await device.admit(guest.waiting.guest)
        out = await guest.wait_for(Admitted)
        assert isinstance(out, Admitted)
        assert out.meeting["title"] == "Fromthelink" and out.meeting["duration"] == 25


async def test_blank_title_is_auto_generated(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with GuestClient(
        foyer.ws_url, host["slug"], name="T", options={"title": "/ : ; ?"}
    ) as guest:
        async with HostClient(foyer.ws_url, host["token"]) as device:
            (g,) = device.welcome.waiting
            assert g["options"]["title"] == "Meeting with Ada Lovelace"
            assert guest.waiting.ignored == ["title"]


def test_settings_patch_is_partial(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    r = _patch(foyer, host["id"], {"policy": {"locked": True}})
    assert r.status_code == 200
    s = r.json()["settings"]
    assert s["policy"] == {
        "bypass": "nobody",
        "locked": True,
        "allow": [],
        "block": [],
        "block_unverified": [],
    }
    r = _patch(foyer, host["id"], {"name": "Ada King", "email_notifications": False})
    s = r.json()["settings"]
    assert r.json()["name"] == "Ada King" and s["policy"]["locked"] is True
    assert s["email_notifications"] is False and s["meeting_defaults"]["duration"] == 30


@pytest.mark.parametrize(
    "body",
    [
        {"policy": {"bypass": "sometimes"}},
        {"meeting_defaults": {"duration": 0}},
        {"meeting_defaults": {"region": "mars"}},
        {"colour": "red"},
        {"policy": {"allow": ["a b"]}},
        {"name": ""},
    ],
)
def test_settings_patch_invalid(
    foyer: FoyerProcess, host: dict[str, Any], body: dict[str, Any]
) -> None:
    r = _patch(foyer, host["id"], body)
    assert r.status_code == 422 and r.json()["code"] == "invalid"


async def test_settings_live_from_a_device(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as d1,
        HostClient(foyer.ws_url, host["token"], codec="json") as d2,
    ):
        await d1.settings(policy={"locked": True})
        changed = await d2.wait_for(SettingsChanged)
        assert isinstance(changed, SettingsChanged) and changed.settings["policy"]["locked"]
        own = await d1.wait_for(SettingsChanged)  # the device that changed it hears it too
        assert isinstance(own, SettingsChanged) and own.settings == changed.settings
        _patch(foyer, host["id"], {"policy": {"locked": False}})
        changed = await d1.wait_for(SettingsChanged)
        assert isinstance(changed, SettingsChanged)
        assert changed.settings["policy"]["locked"] is False
        with pytest.raises(BadMessage):
            await d1.settings(policy={"bypass": "maybe"})


async def test_locked_refuses_new_knocks_keeps_waiting(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Early") as early,
    ):
        _patch(foyer, host["id"], {"policy": {"locked": True}})
        with pytest.raises(Locked) as err:
            async with GuestClient(foyer.ws_url, host["slug"], name="Late"):
                pass
        assert err.value.close_code == 4423
        await device.admit(early.waiting.guest)
        assert (await early.wait_for(Admitted)).type == "admitted"


async def test_bypass_everyone(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    _patch(foyer, host["id"], {"policy": {"bypass": "everyone"}})
    async with GuestClient(foyer.ws_url, host["slug"], name="Walk In") as guest:
        out = await guest.wait_for(Admitted)
        assert isinstance(out, Admitted) and out.mode == "admit"
        assert await guest.wait_closed() == 1000


async def test_bypass_verified_and_labels(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    _patch(foyer, host["id"], {"policy": {"bypass": "verified"}})
    token = _guest_token(foyer, "Vera@Example.com", "Vera")
    async with GuestClient(foyer.ws_url, host["slug"], name="ignored", token=token) as vip:
        assert (await vip.wait_for(Admitted)).type == "admitted"
    async with GuestClient(foyer.ws_url, host["slug"], name="Uma") as plain:
        assert plain.waiting.position == 1
    _patch(foyer, host["id"], {"policy": {"bypass": "nobody"}})
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="x", token=token),
    ):
        jr = await device.wait_for(JoinRequest)
        assert isinstance(jr, JoinRequest)
        assert jr.guest["verified"] is True and jr.guest["label"] == "Vera"
        assert jr.guest["email"] == "vera@example.com"


async def test_bad_guest_token_refused(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized) as err:
        async with GuestClient(foyer.ws_url, host["slug"], name="Mallory", token="x.y.z"):
            pass
    assert err.value.close_code == 4001


async def test_allow_list_admits_verified_only(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    _patch(foyer, host["id"], {"policy": {"allow": ["trusted.example"]}})
    token = _guest_token(foyer, "pat@trusted.example")
    async with GuestClient(foyer.ws_url, host["slug"], name="Pat", token=token) as pat:
        assert (await pat.wait_for(Admitted)).type == "admitted"
    async with GuestClient(
        foyer.ws_url, host["slug"], name="Spoof", email="pat@trusted.example"
    ) as spoof:
        assert spoof.waiting.position == 1  # an unverified email is not believed


async def test_block_list_and_deny_block(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    _patch(foyer, host["id"], {"policy": {"block": ["spam.example"]}})
    async with HostClient(foyer.ws_url, host["token"]) as device:
        async with GuestClient(
            foyer.ws_url, host["slug"], name="S", email="x@spam.example"
        ) as blocked:
            assert (await blocked.wait_for(Denied)).type == "denied"
        async with GuestClient(
            foyer.ws_url, host["slug"], name="Troll", email="troll@example.com"
        ) as troll:
            await device.wait_for(JoinRequest)
            await device.deny(troll.waiting.guest, block=True)
            assert (await troll.wait_for(Denied)).type == "denied"
        async with GuestClient(
            foyer.ws_url, host["slug"], name="Troll again", email="TROLL@example.com"
        ) as again:
            out = await again.wait_for(Denied)
            assert out.message is None
        await device.ping()
        assert not [m for m in device.pending() if isinstance(m, JoinRequest)]
        # The troll only typed that address: its real owner, signed in, still knocks.
        token = _guest_token(foyer, "troll@example.com", "The real one")
        async with GuestClient(foyer.ws_url, host["slug"], name="R", token=token) as real:
            assert real.waiting.position == 1
    with foyer.api() as api:
        policy = api.get(f"/api/hosts/{host['id']}").json()["settings"]["policy"]
    assert policy["block"] == ["spam.example"]
    assert policy["block_unverified"] == ["troll@example.com"]


async def test_deny_block_of_a_verified_guest_blocks_the_identity(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    token = _guest_token(foyer, "mallory@example.com", "Mallory")
    async with HostClient(foyer.ws_url, host["token"]) as device:
        async with GuestClient(foyer.ws_url, host["slug"], name="M", token=token) as first:
            await device.wait_for(JoinRequest)
            await device.deny(first.waiting.guest, block=True)
        async with GuestClient(foyer.ws_url, host["slug"], name="M", token=token) as again:
            assert (await again.wait_for(Denied)).type == "denied"
    with foyer.api() as api:
        policy = api.get(f"/api/hosts/{host['id']}").json()["settings"]["policy"]
    assert policy["block"] == ["mallory@example.com"]


async def test_admit_all_in_order(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="One") as one,
        GuestClient(foyer.ws_url, host["slug"], name="Two") as two,
        GuestClient(foyer.ws_url, host["slug"], name="Three") as three,
    ):
        await device.admit_all()
        order = [(await device.wait_for(Resolved)).guest for _ in range(3)]
        assert order == [one.waiting.guest, two.waiting.guest, three.waiting.guest]
        for guest in (one, two, three):
            assert (await guest.wait_for(Admitted)).type == "admitted"
        async with HostClient(foyer.ws_url, host["token"]) as later:
            assert later.welcome.waiting == []


async def test_scheduled_session(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    with foyer.api() as api:
        r = api.post(
            f"/api/hosts/{host['id']}/sessions",
            json={
                "title": "Quarterly review",
                "starts_at": int(time.time() * 1000),
                "duration": 90,
            },
        )
    assert r.status_code == 201
    session = r.json()
    assert session["link"].endswith(f"/l/{host['slug']}?s={session['id']}")
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(
            foyer.ws_url, host["slug"], name="Sam", query={"s": session["id"], "title": "ignored"}
        ) as guest,
    ):
        jr = await device.wait_for(JoinRequest)
        assert isinstance(jr, JoinRequest)
        assert jr.guest["options"]["title"] == "Quarterly review"
        assert jr.guest["options"]["duration"] == 90
        await device.admit(guest.waiting.guest)
        out = await guest.wait_for(Admitted)
        assert isinstance(out, Admitted)
        assert (out.meeting["title"], out.meeting["duration"]) == ("Quarterly review", 90)
    async with GuestClient(foyer.ws_url, host["slug"], name="Bad", session="nope") as guest:
        assert guest.waiting.ignored == ["session"]
