"""``/api/webhooks`` (issue 12, point 1): endpoints registered through the API,
each with its own secret and filters; rotation with two signatures; the
delivery log, dead letters and redelivery; 410 and enable. Each test has a
Valkey of its own: a registered endpoint makes every process on its Redis
write and deliver outboxes."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from foyer_client import GuestClient, HostClient
from protocol.messages import Admitted, JoinRequest
from tests.receiver import receiving
from tests.support import FoyerProcess, spawn_foyer, valkey_server

FAST = {
    "FOYER_WEBHOOK_ALLOW": "127.0.0.1",
    "FOYER_WEBHOOK_POLL": "0.1",
    "FOYER_WEBHOOK_BACKOFF": "0.2",
    "FOYER_WEBHOOK_BACKOFF_MAX": "0.5",
    "FOYER_WEBHOOK_TIMEOUT": "5",
}


@pytest.fixture
def proc() -> Iterator[FoyerProcess]:
    with valkey_server() as server, spawn_foyer(server.url, FAST) as foyer:
        yield foyer


def _register(api: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    r = api.post("/api/webhooks", json={"url": url, **fields})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _verifies(secret: str, delivery: Any) -> bool:
    try:
        Webhook(secret).verify(delivery.body, delivery.headers)
    except WebhookVerificationError:
        return False
    return True


def test_register_list_get_delete_and_clear_errors(proc: FoyerProcess) -> None:
    with proc.api() as api, receiving() as receiver:
        made = _register(
            api, receiver.url, events=["guest.knocked"], description="CRM", hosts=["ada"]
        )
        assert made["secret"].startswith("whsec_") and made["enabled"] is True
        assert made["events"] == ["guest.knocked"] and made["hosts"] == ["ada"]
        listed = api.get("/api/webhooks").json()["webhooks"]
        assert [e["id"] for e in listed] == [made["id"]]
        assert "secret" not in listed[0]  # shown once, when made (and rotated)
        got = api.get(f"/api/webhooks/{made['id']}").json()
        assert got["description"] == "CRM" and "secret" not in got

        bad = {
            "unknown type": ({"url": receiver.url, "events": ["guest.sneezed"]}, "invalid"),
            "bad host id": ({"url": receiver.url, "hosts": ["no spaces"]}, "invalid"),
            "bad secret": ({"url": receiver.url, "secret": "hunter2"}, "invalid"),
            "not http": ({"url": "ftp://127.0.0.1/x"}, "refused_target"),
            "private": ({"url": "http://10.9.8.7/hook"}, "refused_target"),
            "extra field": ({"url": receiver.url, "colour": "red"}, "invalid"),
        }
        for why, (body, code) in bad.items():
            r = api.post("/api/webhooks", json=body)
            assert r.status_code == 422 and r.json()["code"] == code, (why, r.text)
            assert r.json()["message"], why
        assert api.post("/api/webhooks", content=b"{").json()["code"] == "bad_request"
        assert httpx.get(f"{proc.http_url}/api/webhooks").status_code == 401

        assert api.delete(f"/api/webhooks/{made['id']}").status_code == 204
        gone = api.get(f"/api/webhooks/{made['id']}")
        assert gone.status_code == 404 and gone.json()["code"] == "not_found"
        assert api.delete(f"/api/webhooks/{made['id']}").status_code == 404
        assert api.get("/api/webhooks").json()["webhooks"] == []


async def test_each_endpoint_gets_what_it_filters_signed_with_its_secret(
    proc: FoyerProcess,
) -> None:
    with proc.api() as api, receiving() as wide, receiving() as narrow:
        ada = proc.create_host("Ada Filtered")
        bob = proc.create_host("Bob Unfiltered")
        everything = _register(api, wide.url)
        knocks_of_ada = _register(api, narrow.url, events=["guest.knocked"], hosts=[ada["id"]])
        async with (
            HostClient(proc.ws_url, ada["token"]) as device,
            GuestClient(proc.ws_url, ada["slug"], name="Ann") as ann,
            GuestClient(proc.ws_url, bob["slug"], name="Ben"),
        ):
            await device.wait_for(JoinRequest)
            await device.admit(ann.waiting.guest)
            await ann.wait_for(Admitted)
            await wide.until(lambda: len(wide.delivered(ada["id"])) >= 2)
            await wide.until(lambda: len(wide.delivered(bob["id"])) >= 1)
            await narrow.until(lambda: len(narrow.delivered(ada["id"])) >= 1)
        assert wide.types(ada["id"]) == ["guest.knocked", "guest.resolved"]
        assert "guest.knocked" in wide.types(bob["id"])
        # The narrow endpoint: only Ada's knock; by now the wide one has had
        # Ada's resolve and Bob's knock, which were due in the same passes.
        assert narrow.types(ada["id"]) == ["guest.knocked"]
        assert narrow.of(bob["id"]) == []
        for delivery in wide.deliveries:
            assert _verifies(everything["secret"], delivery)
            assert not _verifies(knocks_of_ada["secret"], delivery)
        for delivery in narrow.deliveries:
            assert _verifies(knocks_of_ada["secret"], delivery)
            assert not _verifies(everything["secret"], delivery)
        # The same event to two endpoints has the same webhook-id.
        (knock,) = narrow.delivered(ada["id"])
        assert knock in wide.delivered(ada["id"])


async def test_a_rotated_secret_overlaps_then_the_old_one_stops(proc: FoyerProcess) -> None:
    with proc.api() as api, receiving() as receiver:
        host = proc.create_host("Rotating Ada")
        made = _register(api, receiver.url, hosts=[host["id"]])
        new = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        r = api.post(f"/api/webhooks/{made['id']}/rotate", json={"secret": new, "overlap": 3600})
        assert r.status_code == 200 and r.json()["secret"] == new
        assert r.json()["secrets_signing"] == 2 and r.json()["previous_signs_until"]
        async with GuestClient(proc.ws_url, host["slug"], name="One") as one:
            await receiver.until(lambda: len(receiver.delivered(host["id"])) >= 1)
            (first,) = receiver.delivered(host["id"]).values()
            assert len(first.headers["webhook-signature"].split()) == 2
            assert _verifies(made["secret"], first) and _verifies(new, first)
            await one.cancel()
            await receiver.until(lambda: len(receiver.delivered(host["id"])) >= 2)

        # No overlap: the old secret signs nothing from now on.
        r = api.post(f"/api/webhooks/{made['id']}/rotate", json={"overlap": 0})
        newest = r.json()["secret"]
        assert newest.startswith("whsec_") and r.json()["secrets_signing"] == 1
        async with GuestClient(proc.ws_url, host["slug"], name="Two"):
            await receiver.until(lambda: len(receiver.delivered(host["id"])) >= 3)
        last = [d for d in receiver.delivered(host["id"]).values() if _verifies(newest, d)]
        assert len(last) == 1 and len(last[0].headers["webhook-signature"].split()) == 1
        assert not _verifies(new, last[0]) and not _verifies(made["secret"], last[0])
        r = api.post(f"/api/webhooks/{made['id']}/rotate", json={"secret": "whsec_!"})
        assert r.status_code == 422


async def test_dead_letters_are_listed_and_redelivered_with_their_id() -> None:
    with (
        valkey_server() as server,
        spawn_foyer(server.url, {**FAST, "FOYER_WEBHOOK_ATTEMPTS": "2"}) as proc,
        proc.api() as api,
        receiving() as receiver,
    ):
        receiver.answer = lambda event: (500, {})
        host = proc.create_host("Dead Letters")
        made = _register(api, receiver.url)
        path = f"/api/webhooks/{made['id']}/deliveries"
        async with GuestClient(proc.ws_url, host["slug"], name="Lost"):
            await receiver.until(lambda: len(receiver.of(host["id"])) >= 2)
            log = await _eventually(
                api, path, lambda log: [a["result"] for a in log["attempts"]][:1] == ["dead"]
            )
        (dead,) = log["dead"]
        assert dead["attempts"] == 2 and dead["last"] == "500"
        assert dead["event"]["type"] == "guest.knocked" and dead["host"] == host["id"]
        results = [a["result"] for a in log["attempts"] if a["id"] == dead["id"]]
        assert results == ["dead", "retrying"]  # newest first
        assert all("event" not in a for a in log["attempts"])

        receiver.answer = lambda event: (200, {})
        r = api.post(f"{path}/{dead['id']}/redeliver")
        assert r.status_code == 202 and r.json() == {"status": "queued", "id": dead["id"]}
        await receiver.until(lambda: dead["id"] in receiver.delivered(host["id"]))
        again = receiver.delivered(host["id"])[dead["id"]]
        assert again.event == dead["event"] and _verifies(made["secret"], again)
        after = await _eventually(api, path, lambda log: log["attempts"][0]["result"] != "dead")
        assert after["dead"] == [] and after["attempts"][0]["result"] == "delivered"
        missing = api.post(f"{path}/msg_nope/redeliver")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        assert api.get(f"{path}?limit=0").status_code == 422


async def test_410_disables_one_endpoint_and_enable_turns_it_on(proc: FoyerProcess) -> None:
    with proc.api() as api, receiving() as leaving, receiving() as staying:
        leaving.answer = lambda event: (410, {})
        host = proc.create_host("Gone Away")
        left = _register(api, leaving.url)
        _register(api, staying.url)
        async with GuestClient(proc.ws_url, host["slug"], name="First") as first:
            await leaving.until(lambda: len(leaving.of(host["id"])) == 1)
            await first.cancel()
            await staying.until(lambda: len(staying.delivered(host["id"])) == 2)
        view = api.get(f"/api/webhooks/{left['id']}").json()
        assert view["enabled"] is False and view["disabled_reason"] == "gone"
        log = await _eventually(
            api, f"/api/webhooks/{left['id']}/deliveries", lambda log: len(log["dead"]) == 2
        )
        assert {d["last"] for d in log["dead"]} == {"gone"}
        assert len(leaving.of(host["id"])) == 1  # never POSTed again

        leaving.answer = lambda event: (200, {})
        assert api.post(f"/api/webhooks/{left['id']}/enable").json()["enabled"] is True
        async with GuestClient(proc.ws_url, host["slug"], name="Back"):
            await leaving.until(lambda: len(leaving.delivered(host["id"])) == 1)


async def _eventually(api: httpx.Client, path: str, ready: Any) -> dict[str, Any]:
    """GET ``path`` until ``ready(body)`` (bounded: fails the test)."""
    async with asyncio.timeout(30):
        while True:
            body: dict[str, Any] = (await asyncio.to_thread(api.get, path)).json()
            if ready(body):
                return body
            await asyncio.sleep(0.05)


async def test_meeting_and_booking_events_are_delivered(proc: FoyerProcess) -> None:
    with proc.api() as api, receiving() as receiver:
        host = proc.create_host("Planner Ada")
        _register(api, receiver.url, events=["meeting.created", "meeting.cancelled"])
        made = api.post("/api/meetings", json={"host": host["id"], "title": "Review"})
        assert made.status_code == 201, made.text
        meeting = made.json()
        assert api.delete(f"/api/meetings/{meeting['id']}").status_code in (200, 204)
        await receiver.until(lambda: len(receiver.delivered(host["id"])) >= 2)
        got = {d.event["type"]: d.event["data"] for d in receiver.delivered(host["id"]).values()}
        assert sorted(got) == ["meeting.cancelled", "meeting.created"]
        assert got["meeting.created"]["id"] == meeting["id"]
        assert got["meeting.created"]["title"] == "Review"
        assert got["meeting.cancelled"]["status"] == "cancelled"


async def test_booking_events_are_delivered(proc: FoyerProcess) -> None:
    with proc.api() as api, receiving() as receiver:
        host = proc.create_host("Booked Ada")
        _register(api, receiver.url, events=["booking.created", "booking.cancelled"])
        ws = "ws-hooks"
        connected = api.put(
            f"/api/workspaces/{ws}/users/{host['id']}/connection",
            json={"provider": "template", "account": "ada@video"},
        )
        assert connected.is_success, connected.text
        body = {
            "host": host["id"],
            "starts_at": "2030-01-01T09:00:00Z",
            "ends_at": "2030-01-01T09:30:00Z",
            "title": "Intro call",
            "attendees": ["guest@example.org"],
            "location": "video",
        }
        made = api.post(f"/api/workspaces/{ws}/bookings", json=body)
        assert made.status_code == 201, made.text
        booking = made.json()
        cancel = api.post(f"/api/workspaces/{ws}/bookings/{booking['id']}/cancel")
        assert cancel.is_success, cancel.text
        await receiver.until(lambda: len(receiver.delivered(host["id"])) >= 2)
        got = {d.event["type"]: d.event["data"] for d in receiver.delivered(host["id"]).values()}
        assert sorted(got) == ["booking.cancelled", "booking.created"]
        assert got["booking.created"]["id"] == booking["id"]
        assert got["booking.created"]["meeting_id"] == booking["meeting_id"]
        assert got["booking.cancelled"]["status"] == "cancelled"
