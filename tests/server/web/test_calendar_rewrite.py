"""``POST /api/calendar/rewrite`` on a real ``foyer serve`` (issue 13, point 4,
the HTTP side): a one-off event's personal link becomes a dedicated
meeting's join link, made once per (host, event) however often it is sent;
a recurring one keeps it; JSON events too; auth and bad input."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support import FoyerProcess


def _ics(link: str, uid: str) -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
        "BEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20261201T080000Z\r\n"
        "DTSTART:20301201T090000Z\r\nDTEND:20301201T094500Z\r\n"
        "SUMMARY:Pricing review\r\n"
        f"LOCATION:{link}?title=Pricing\r\n"
        "END:VEVENT\r\n"
        "BEGIN:VEVENT\r\n"
        f"UID:series-{uid}\r\nDTSTAMP:20261201T080000Z\r\n"
        "DTSTART:20301202T090000Z\r\nRRULE:FREQ=WEEKLY\r\n"
        "SUMMARY:Stand-up\r\n"
        f"LOCATION:{link}\r\n"
        "END:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    ).encode()


def test_an_ics_one_off_event_gets_one_dedicated_meeting(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    link = f"{foyer.http_url}/l/{host['slug']}"
    body = _ics(link, f"{uuid.uuid4().hex}@test")
    calendar = {"content-type": "text/calendar", "Accept": "application/json"}
    with foyer.api() as api:
        first = api.post(
            "/api/calendar/rewrite", params={"host": host["id"]}, content=body, headers=calendar
        )
        assert first.status_code == 200, first.text
        again = api.post(
            "/api/calendar/rewrite", params={"host": host["id"]}, content=body, headers=calendar
        )
        events = first.json()["events"]
        assert [e["action"] for e in events] == ["rewritten", "kept_recurring"]
        meeting_id = events[0]["meeting_id"]
        assert again.json()["events"][0]["meeting_id"] == meeting_id  # no second meeting
        meeting = api.get(f"/api/meetings/{meeting_id}").json()
    ics = first.json()["ics"]
    assert f"LOCATION:{meeting['join_link']}\r\n" in ics
    assert f"LOCATION:{link}\r\n" in ics  # the series keeps the personal link
    assert meeting["title"] == "Pricing" and meeting["host"] == host["id"]
    assert meeting["ends_at"] - meeting["starts_at"] == 45 * 60_000
    plain = httpx.post(
        f"{foyer.http_url}/api/calendar/rewrite?host={host['id']}",
        content=body,
        headers={"content-type": "text/calendar", "Authorization": f"Bearer {host['token']}"},
    )
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/calendar")
    assert plain.content.decode() == ics  # the host's own token; the same meeting again


def test_a_json_event_with_the_host_as_a_field(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    link = f"{foyer.http_url}/l/{host['slug']}"
    event = {
        "host": host["id"],
        "uid": uuid.uuid4().hex,
        "title": "Intro",
        "starts_at": "2030-12-01T09:00:00Z",
        "location": link,
        "description": f"Join: {link}",
        "crm_id": 42,
    }
    with foyer.api() as api:
        first = api.post("/api/calendar/rewrite", json=event)
        again = api.post("/api/calendar/rewrite", json=event)
    assert first.status_code == 200, first.text
    out, outcome = first.json()["event"], first.json()["outcome"]
    assert outcome["action"] == "rewritten" and again.json() == first.json()
    join = f"{foyer.http_url}/m/{outcome['meeting_id']}"
    assert out["location"] == join and out["description"] == f"Join: {join}"
    assert out["crm_id"] == 42 and "host" not in out


def test_rewrite_auth_and_bad_input_are_clear_errors(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    other = foyer.create_host("Other")
    url = f"{foyer.http_url}/api/calendar/rewrite?host={host['id']}"
    event = {"uid": "u1", "location": f"{foyer.http_url}/l/{host['slug']}"}
    theirs = httpx.post(url, json=event, headers={"Authorization": f"Bearer {other['token']}"})
    assert theirs.status_code == 401
    with foyer.api() as api:
        no_host = api.post("/api/calendar/rewrite", json=event)
        assert no_host.status_code == 422 and "host" in no_host.json()["message"]
        junk = api.post(url, content=b"hello", headers={"content-type": "text/calendar"})
        assert junk.status_code == 400 and junk.json()["code"] == "bad_request"
        not_json = api.post(url, content=b"{", headers={"content-type": "application/json"})
        assert not_json.status_code == 400
        bad_uid = api.post(url, json={"uid": 5})
        assert bad_uid.status_code == 400 and "uid" in bad_uid.json()["message"]
        nobody = api.post("/api/calendar/rewrite?host=nobody-x", json=event)
        assert nobody.status_code == 404


def test_a_link_with_an_earlier_slug_is_found_too(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    """Invitations sent before a slug change hold the old link: kept or retired,
    it is still the host's personal link."""
    old = host["slug"]
    calendar = {"content-type": "text/calendar", "Accept": "application/json"}
    with foyer.api() as api:
        assert api.put(f"/api/hosts/{host['id']}/slug", json={"slug": f"{old}-two"}).is_success
        changed = api.put(
            f"/api/hosts/{host['id']}/slug", json={"slug": f"{old}-three", "retire_old": True}
        )
        assert changed.is_success, changed.text
        for slug in (old, f"{old}-two", f"{old}-three"):
            body = _ics(f"{foyer.http_url}/l/{slug}", f"{uuid.uuid4().hex}@test")
            answer = api.post(
                "/api/calendar/rewrite", params={"host": host["id"]}, content=body, headers=calendar
            )
            assert answer.json()["events"][0]["action"] == "rewritten", slug
