"""The meetings HTTP API on a real ``foyer serve`` (issue 13, points 1, 2, 3,
5): dedicated meetings with the API key or the host's token, connections,
bookings with their link rules, idempotency and invitations, the join link
``/m/{id}`` through the knock, and the rotating calendar feed."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from icalendar import Calendar

from foyer_client import GuestClient, HostClient
from protocol.messages import Admitted, JoinRequest
from tests.server.meetings.test_provider import SECRET, Integrator
from tests.support import FoyerProcess, spawn_foyer

START = "2030-01-01T09:00:00Z"
END = "2030-01-01T09:30:00Z"
START_MS = 1_893_488_400_000


def _ws() -> str:
    return "ws-" + uuid.uuid4().hex[:10]


def _booking(host: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "host": host["id"],
        "starts_at": START,
        "ends_at": END,
        "title": "Intro call",
        "attendees": ["guest@example.org"],
        "location": "video",
        **extra,
    }


def _connect(api: httpx.Client, ws: str, host: dict[str, Any], account: str = "ada@video") -> None:
    put = api.put(
        f"/api/workspaces/{ws}/users/{host['id']}/connection",
        json={"provider": "template", "account": account},
    )
    assert put.status_code == 200, put.text
    assert put.json()["account"] == account and put.json()["provider"] == "template"


def test_a_meeting_is_made_with_the_api_key_or_the_hosts_own_token(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    other = foyer.create_host("Other")
    with foyer.api() as api:
        made = api.post("/api/meetings", json={"host": host["id"], "title": "Standup"})
        assert made.status_code == 201, made.text
        meeting = made.json()
        again = api.post("/api/meetings", json={"host": host["id"]}).json()  # Meet Now
        planned = api.post(
            "/api/meetings", json={"host": host["id"], "starts_at": START, "ends_at": END}
        ).json()
    assert meeting["title"] == "Standup" and meeting["status"] == "scheduled"
    assert meeting["join_link"] == f"{foyer.http_url}/m/{meeting['id']}"
    assert meeting["url"].endswith(meeting["id"]) and meeting["url"].startswith("https://")
    assert again["id"] != meeting["id"] and again["title"] == "Meeting with Ada Lovelace"
    assert (planned["starts_at"], planned["ends_at"]) == (START_MS, START_MS + 1_800_000)
    own = {"Authorization": f"Bearer {host['token']}"}
    theirs = {"Authorization": f"Bearer {other['token']}"}
    url = f"{foyer.http_url}/api/meetings/{meeting['id']}"
    assert httpx.get(url, headers=own).json() == meeting
    assert httpx.get(url, headers=theirs).status_code == 401
    assert httpx.delete(url, headers=theirs).status_code == 401
    mine = httpx.post(f"{foyer.http_url}/api/meetings", json={"host": host["id"]}, headers=own)
    assert mine.status_code == 201
    forged = httpx.post(f"{foyer.http_url}/api/meetings", json={"host": host["id"]}, headers=theirs)
    assert forged.status_code == 401 and forged.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"host": "nobody-here"}, 404, "no such host"),
        ({"title": "x"}, 422, "host"),
        ({"host": "HOST", "starts_at": START}, 422, "starts_at and ends_at come together"),
        ({"host": "HOST", "starts_at": END, "ends_at": START}, 422, "ends_at must be after"),
        ({"host": "HOST", "starts_at": "2030-01-01T09:00:00"}, 422, "starts_at"),
    ],
)
def test_a_bad_meeting_request_is_a_clear_error(
    foyer: FoyerProcess, host: dict[str, Any], body: dict[str, Any], status: int, words: str
) -> None:
    body = {k: host["id"] if v == "HOST" else v for k, v in body.items()}
    with foyer.api() as api:
        answer = api.post("/api/meetings", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["message"]
    assert httpx.get(f"{foyer.http_url}/api/meetings/mnothing").status_code == 404


def test_connect_book_reschedule_and_cancel_over_http(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    ws = _ws()
    with foyer.api() as api:
        bare = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host))
        assert bare.status_code == 201 and bare.json()["join_link"] is None
        _connect(api, ws, host)
        made = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host))
        assert made.status_code == 201, made.text
        booking = made.json()
        phone = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host, location="phone"))
        assert phone.json()["join_link"] is None
        link = booking["join_link"]
        assert link == f"{foyer.http_url}/m/{booking['meeting_id']}"
        path = f"/api/workspaces/{ws}/bookings/{booking['id']}"
        assert api.get(path).json() == booking
        assert api.get(f"/api/workspaces/{ws}/bookings/{bare.json()['id']}").json() == bare.json()

        invite = Calendar.from_ical(api.get(path, headers={"Accept": "text/calendar"}).content)
        assert str(invite["METHOD"]) == "REQUEST"
        (event,) = invite.walk("VEVENT")
        assert str(event["LOCATION"]) == link and link in str(event["DESCRIPTION"])
        assert str(event["CONFERENCE"]) == link and event["CONFERENCE"].params["FEATURE"] == "VIDEO"
        assert int(event["SEQUENCE"]) == 0 and str(event["SUMMARY"]) == "Intro call"
        assert str(event["ATTENDEE"]) == "mailto:guest@example.org"
        assert event.decoded("DTSTART").timestamp() * 1000 == START_MS

        moved = api.patch(
            path, json={"starts_at": "2030-01-02T09:00:00Z", "ends_at": "2030-01-02T10:00:00Z"}
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["join_link"] == link and moved.json()["sequence"] == 1
        ics = Calendar.from_ical(api.get(path + ".ics").content)
        assert int(ics.walk("VEVENT")[0]["SEQUENCE"]) == 1

        meeting = api.get(f"/api/meetings/{booking['meeting_id']}").json()
        assert meeting["starts_at"] == START_MS + 24 * 3_600_000

        cancelled = api.post(path + "/cancel")
        assert cancelled.json()["status"] == "cancelled" and cancelled.json()["sequence"] == 2
        assert api.delete(path).json() == cancelled.json()  # again: nothing changes
        gone = Calendar.from_ical(api.get(path + ".ics").content)
        assert str(gone["METHOD"]) == "CANCEL"
        assert str(gone.walk("VEVENT")[0]["STATUS"]) == "CANCELLED"
        assert api.patch(path, json={"starts_at": START, "ends_at": END}).status_code == 409
        assert api.get(f"/api/meetings/{booking['meeting_id']}").json()["status"] == "cancelled"
        booked = api.delete(f"/api/meetings/{booking['meeting_id']}")
        assert booked.status_code == 409 and booked.json()["code"] == "booked_meeting"
        assert f"/api/workspaces/{ws}/bookings/{booking['id']}" in booked.json()["message"]

    page = httpx.get(link)
    assert page.status_code == 410 and "Meeting cancelled" in page.text
    assert "Intro call" in page.text

    with foyer.api() as api:
        assert api.delete(f"/api/workspaces/{ws}/users/{host['id']}/connection").status_code == 204
        none = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host)).json()
        assert none["join_link"] is None
        lookup = api.get(f"/api/workspaces/{ws}/users/{host['id']}/connection")
        assert lookup.status_code == 404


def test_the_idempotency_key_over_http(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    ws = _ws()
    with foyer.api() as api:
        _connect(api, ws, host)
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host), headers=key)
        again = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host), headers=key)
        other = api.post(
            f"/api/workspaces/{ws}/bookings", json=_booking(host, title="Other"), headers=key
        )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


def test_connections_need_the_api_key_and_a_known_provider_and_user(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    ws = _ws()
    path = f"{foyer.http_url}/api/workspaces/{ws}/users/{host['id']}/connection"
    body = {"provider": "template", "account": "a"}
    own = {"Authorization": f"Bearer {host['token']}"}
    assert httpx.put(path, json=body, headers=own).status_code == 401
    with foyer.api() as api:
        bad = api.put(path, json={"provider": "zoom", "account": "a"})
        assert bad.status_code == 422 and "provider must be one of" in bad.json()["message"]
        hook = api.put(path, json={"provider": "webhook", "account": "a"})
        assert hook.status_code == 422 and "not set up" in hook.json()["message"]
        nobody = api.put(f"/api/workspaces/{ws}/users/nobody-x/connection", json=body)
        assert nobody.status_code == 404
        assert api.get(path).status_code == 404  # nothing was connected


async def test_a_guest_knocks_on_the_join_link_and_is_admitted_to_the_dedicated_meeting(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    with foyer.api() as api:
        meeting = api.post(
            "/api/meetings",
            json={"host": host["id"], "title": "Design review", "starts_at": START, "ends_at": END},
        ).json()
    async with httpx.AsyncClient() as http:
        hop = await http.get(meeting["join_link"])
        page = await http.get(foyer.http_url + hop.headers["location"])
    assert hop.status_code == 303 and page.status_code == 200
    target = urlsplit(hop.headers["location"])
    assert target.path == f"/l/{host['slug']}"
    session = parse_qs(target.query)["s"][0]
    assert session == meeting["id"]
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Ann", session=session) as guest,
    ):
        knock = await device.wait_for(JoinRequest)
        options = knock.guest["options"]
        assert options["title"] == "Design review"
        assert options["when"] == "2030-01-01 09:00 to 09:30 UTC"
        assert options["meeting"] == meeting["id"] and options["duration"] == 30
        await device.admit(guest.waiting.guest)
        admitted = await guest.wait_for(Admitted)
    assert admitted.meeting["url"] == meeting["url"]
    assert admitted.meeting["id"] == meeting["id"]
    assert admitted.meeting["title"] == "Design review"


async def test_admit_all_sends_a_dedicated_meetings_guest_to_its_url(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    with foyer.api() as api:
        meeting = api.post("/api/meetings", json={"host": host["id"], "title": "Demo"}).json()
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, host["slug"], name="Dedicated", session=meeting["id"]) as one,
        GuestClient(foyer.ws_url, host["slug"], name="Personal") as two,
    ):
        await device.wait_for(JoinRequest)
        await device.wait_for(JoinRequest)
        await device.admit_all()
        first, second = await one.wait_for(Admitted), await two.wait_for(Admitted)
    assert first.meeting["url"] == meeting["url"]
    assert second.meeting["url"] != meeting["url"]


def test_the_calendar_feed_opens_by_its_secret_url_until_rotated(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    ws = _ws()
    own = {"Authorization": f"Bearer {host['token']}"}
    with foyer.api() as api:
        _connect(api, ws, host)
        booking = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host)).json()
        meeting = api.post(
            "/api/meetings",
            json={"host": host["id"], "title": "Planned", "starts_at": START, "ends_at": END},
        ).json()
        api.post("/api/meetings", json={"host": host["id"], "title": "Now"})  # no time: not listed
    feed_path = f"{foyer.http_url}/api/hosts/{host['id']}/calendar-feed"
    assert httpx.post(feed_path).status_code == 401
    first = httpx.post(feed_path, headers=own)
    assert first.status_code == 201
    url = first.json()["url"]
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/calendar")
    events = Calendar.from_ical(answer.content).walk("VEVENT")
    assert sorted(str(e["SUMMARY"]) for e in events) == ["Intro call", "Planned"]
    links = {str(e["CONFERENCE"]) for e in events}
    assert links == {booking["join_link"], meeting["join_link"]}
    with foyer.api() as api:
        second = api.post(f"/api/hosts/{host['id']}/calendar-feed").json()["url"]
    assert httpx.get(url).status_code == 404  # the old URL
    assert httpx.get(second).status_code == 200
    assert httpx.get(second.split("?")[0]).status_code == 404


def test_a_webhook_provider_failure_is_a_502_and_no_booking(redis_url: str) -> None:
    """A deployment whose meetings come from the integrator: its failure is
    ``502 provider_failed``, nothing is stored, and a retry with the same key
    makes the booking once the integrator answers."""
    with Integrator() as integrator:
        env = {
            "FOYER_MEETING_PROVIDER": "webhook",
            "FOYER_MEETING_WEBHOOK_URL": integrator.url,
            "FOYER_MEETING_WEBHOOK_SECRET": SECRET,
            "FOYER_MEETING_WEBHOOK_TIMEOUT": "2",
            "FOYER_WEBHOOK_ALLOW": "127.0.0.1",
        }
        with spawn_foyer(redis_url, env) as proc, proc.api() as api:
            host = proc.create_host("Hooked")
            ws = _ws()
            put = api.put(
                f"/api/workspaces/{ws}/users/{host['id']}/connection",
                json={"provider": "webhook", "account": "acct-1"},
            )
            assert put.status_code == 200, put.text
            integrator.answer = lambda e: (500, b"{}")
            key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
            failed = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host), headers=key)
            assert failed.status_code == 502
            assert failed.json() == {
                "code": "provider_failed",
                "message": "the meeting provider answered HTTP 500",
            }
            feed = api.post(f"/api/hosts/{host['id']}/calendar-feed").json()["url"]
            assert Calendar.from_ical(httpx.get(feed).content).walk("VEVENT") == []

            def made_by_integrator(event: dict[str, Any]) -> tuple[int, bytes]:
                name = event["data"]["account"] or event["data"]["meeting_id"]
                return 200, json.dumps({"url": f"https://video.example/{name}"}).encode()

            integrator.answer = made_by_integrator
            made = api.post(f"/api/workspaces/{ws}/bookings", json=_booking(host), headers=key)
            assert made.status_code == 201, made.text
            assert made.json()["meeting_url"] == "https://video.example/acct-1"
            direct = api.post("/api/meetings", json={"host": host["id"]})
            assert direct.status_code == 201  # the deployment's default provider: the webhook
            assert direct.json()["url"] == f"https://video.example/{direct.json()['id']}"


def test_a_cancelled_meeting_join_link_says_so(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    own = {"Authorization": f"Bearer {host['token']}"}
    made = httpx.post(
        f"{foyer.http_url}/api/meetings", json={"host": host["id"], "title": "Retro"}, headers=own
    ).json()
    assert httpx.get(made["join_link"]).status_code == 303
    cancelled = httpx.delete(f"{foyer.http_url}/api/meetings/{made['id']}", headers=own)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    page = httpx.get(made["join_link"])
    assert page.status_code == 410 and "“Retro” was cancelled" in page.text
    assert httpx.get(f"{foyer.http_url}/m/mffffffffffffffffffff").status_code == 404
