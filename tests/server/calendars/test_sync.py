"""Calendar sync (issue 15) against a real CalDAV server (Radicale), real
Valkey and real ``foyer serve`` processes: Foyer rewrites one-off events that
hold the personal link in place on the host's calendar, and nothing else."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis

from tests.caldav_server import Radicale, radicale_server
from tests.support import FoyerProcess, spawn_foyer, valkey_server

BASE = "https://foyer.example"  # FOYER_PUBLIC_URL: personal links are written with it
WAIT = 40.0
ENV = {
    "FOYER_PUBLIC_URL": BASE,
    "FOYER_CALENDAR_ALLOW": "127.0.0.1",
    "FOYER_CALENDAR_POLL": "0.1",
    "FOYER_CALENDAR_INTERVAL": "1",
}
JOIN = re.compile(re.escape(BASE) + r"/m/(m[0-9a-f]{20})")


def event(
    uid: str,
    location: str,
    *,
    start: str = "20301202T100000Z",
    end: str = "20301202T110000Z",
    summary: str = "Review with Ann",
    extra: str = "",
) -> bytes:
    """One VEVENT the way exporters write it: CRLF, a folded DESCRIPTION."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Foyer tests//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20301101T090000Z",
        f"DTSTART:{start}",
        f"DTEND:{end}",
        f"SUMMARY:{summary}",
        f"LOCATION:{location}",
        "DESCRIPTION:Agenda: the numbers\\, the plan\\, and anything else that comes u",
        " p on the day.",
        "X-CUSTOM;X-PARAM=1:keep me as I am",
        *([extra] if extra else []),
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture(scope="module")
def dav() -> Iterator[Radicale]:
    with radicale_server({"ada": "ada-pass", "bob": "bob-pass"}) as server:
        yield server


@pytest.fixture(scope="module")
def proc() -> Iterator[FoyerProcess]:
    with valkey_server() as store, spawn_foyer(store.url, ENV) as foyer:
        yield foyer


def _connect(api: httpx.Client, host: str, name: str, url: str, user: str, pw: str) -> Any:
    return api.put(
        f"/api/hosts/{host}/calendars/{name}",
        json={"url": url, "username": user, "password": pw},
    )


async def _state(
    api: httpx.Client, host: str, name: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The calendar's state once ``ready(state)`` (bounded: fails the test)."""
    async with asyncio.timeout(WAIT):
        while True:
            found = (await asyncio.to_thread(api.get, f"/api/hosts/{host}/calendars")).json()
            for calendar in found["calendars"]:
                if calendar["name"] == name and ready(calendar["state"]):
                    return dict(calendar["state"])
            await asyncio.sleep(0.1)


async def _round_after(api: httpx.Client, host: str, name: str) -> dict[str, Any]:
    """Ask for a round now and wait for one that started after the ask."""
    before = (await _state(api, host, name, lambda s: True)).get("last_sync") or 0
    asked = await asyncio.to_thread(api.post, f"/api/hosts/{host}/calendars/{name}/sync")
    assert asked.status_code == 202
    return await _state(api, host, name, lambda s: (s["last_sync"] or 0) > before)


def _unfold(data: bytes) -> bytes:
    """Content lines unfolded (the client hands bodies over with LF endings)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n ", b"")


def _lines(data: bytes) -> list[bytes]:
    return _unfold(data).split(b"\n")


def test_connecting_checks_the_calendar_at_once(proc: FoyerProcess, dav: Radicale) -> None:
    host = proc.create_host("Ada Checked")
    url = dav.calendar("ada", "checked")
    with proc.api() as api:
        wrong = _connect(api, host["id"], "work", url, "ada", "not-the-password")
        assert wrong.status_code == 422 and wrong.json()["code"] == "calendar_refused"
        home = _connect(api, host["id"], "work", f"{dav.url}/ada/", "ada", "ada-pass")
        assert home.status_code == 422 and home.json()["code"] == "not_a_calendar"
        closed = _connect(api, host["id"], "work", "http://127.0.0.1:9/cal/", "ada", "x")
        assert closed.status_code == 502 and closed.json()["code"] == "calendar_unreachable"
        bad_name = _connect(api, host["id"], "Not A Name", url, "ada", "ada-pass")
        assert bad_name.status_code == 404
        assert api.get(f"/api/hosts/{host['id']}/calendars").json() == {"calendars": []}

        made = _connect(api, host["id"], "work", url, "ada", "ada-pass")
        assert made.status_code == 201, made.text
        assert "password" not in made.text and "ada-pass" not in made.text
        again = _connect(api, host["id"], "work", url, "ada", "ada-pass")
        assert again.status_code == 200
        listed = api.get(f"/api/hosts/{host['id']}/calendars").json()["calendars"]
        assert [c["name"] for c in listed] == ["work"] and "ada-pass" not in str(listed)
        assert httpx.get(f"{proc.http_url}/api/hosts/{host['id']}/calendars").status_code == 401
        assert api.delete(f"/api/hosts/{host['id']}/calendars/work").status_code == 204
        assert api.delete(f"/api/hosts/{host['id']}/calendars/work").status_code == 404
    assert "ada-pass" not in proc.log()


async def test_a_one_off_event_gets_its_own_link_and_the_rest_stays(
    proc: FoyerProcess, dav: Radicale
) -> None:
    host = proc.create_host("Ada One-Off")
    personal = f"{BASE}/l/{host['slug']}"
    url = dav.calendar("ada", "one-off")
    href = f"{url}review.ics"
    assert dav.put("ada", href, event("review@example", personal)) == 201
    before = dav.get("ada", href)
    assert before is not None
    with proc.api() as api:
        assert _connect(api, host["id"], "work", url, "ada", "ada-pass").status_code == 201
        state = await _state(api, host["id"], "work", lambda s: s["events_rewritten"] >= 1)
        assert state["error"] is None and state["events_seen"] == 1
        after = dav.get("ada", href)
        assert after is not None
        assert personal.encode() not in _unfold(after[0])
        (meeting_id,) = set(JOIN.findall(_unfold(after[0]).decode()))
        changed = [
            (a, b) for a, b in zip(_lines(before[0]), _lines(after[0]), strict=True) if a != b
        ]
        assert [a.split(b":", 1)[0] for a, _ in changed] == [b"LOCATION"]
        meeting = api.get(f"/api/meetings/{meeting_id}").json()
        assert meeting["title"] == "Review with Ann" and meeting["host"] == host["id"]
        assert meeting["starts_at"] == 1922436000000  # 2030-12-02 10:00 UTC

        # Later rounds leave it alone: the same meeting, the same bytes.
        await _round_after(api, host["id"], "work")
        assert dav.get("ada", href) == after


async def test_a_series_and_its_edited_occurrence_are_left_alone(
    proc: FoyerProcess, dav: Radicale
) -> None:
    host = proc.create_host("Ada Weekly")
    personal = f"{BASE}/l/{host['slug']}"
    url = dav.calendar("ada", "weekly")
    series = event("weekly@example", personal, extra="RRULE:FREQ=WEEKLY;COUNT=10")
    occurrence = event(
        "weekly@example",
        personal,
        start="20301209T120000Z",
        end="20301209T130000Z",
        extra="RECURRENCE-ID:20301209T100000Z",
    )
    # A series and its edited occurrence live in one resource (one UID per
    # resource, RFC 4791 5.3.2); an invitee may hold an occurrence on its own.
    both = (
        series.replace(b"END:VCALENDAR\r\n", b"")
        + occurrence.split(b"PRODID:-//Foyer tests//EN\r\n")[1]
    )
    alone = occurrence.replace(b"weekly@example", b"instance@example")
    assert dav.put("ada", f"{url}weekly.ics", both) == 201
    assert dav.put("ada", f"{url}moved.ics", alone) == 201
    stored = {h: dav.get("ada", f"{url}{h}") for h in ("weekly.ics", "moved.ics")}
    with proc.api() as api:
        assert _connect(api, host["id"], "work", url, "ada", "ada-pass").status_code == 201
        state = await _state(api, host["id"], "work", lambda s: s["last_ok"] is not None)
        assert state["events_seen"] == 2 and state["events_rewritten"] == 0
    for name, was in stored.items():
        assert dav.get("ada", f"{url}{name}") == was  # byte for byte, same ETag


async def test_a_moved_event_moves_its_meeting_and_a_deleted_one_cancels_it(
    proc: FoyerProcess, dav: Radicale
) -> None:
    host = proc.create_host("Ada Moves")
    personal = f"{BASE}/l/{host['slug']}"
    url = dav.calendar("ada", "moves")
    href = f"{url}plan.ics"
    assert dav.put("ada", href, event("plan@example", personal)) == 201
    with proc.api() as api:
        assert _connect(api, host["id"], "work", url, "ada", "ada-pass").status_code == 201
        await _state(api, host["id"], "work", lambda s: s["events_rewritten"] >= 1)
        rewritten = dav.get("ada", href)
        assert rewritten is not None
        text = _unfold(rewritten[0]).decode()
        (meeting_id,) = set(JOIN.findall(text))
        # The user moves it an hour later and renames it, as a calendar app would.
        moved = text.replace("DTSTART:20301202T100000Z", "DTSTART:20301202T110000Z")
        moved = moved.replace("DTEND:20301202T110000Z", "DTEND:20301202T120000Z")
        moved = moved.replace("SUMMARY:Review with Ann", "SUMMARY:Plan with Ann")
        assert dav.put("ada", href, moved.encode(), rewritten[1]) in (200, 201, 204)
        await _round_after(api, host["id"], "work")
        meeting = api.get(f"/api/meetings/{meeting_id}").json()
        assert meeting["starts_at"] == 1922436000000 + 3_600_000
        assert meeting["title"] == "Plan with Ann" and meeting["status"] != "cancelled"
        after_move = dav.get("ada", href)
        assert after_move is not None and meeting_id in after_move[0].decode()

        assert dav.delete("ada", href) in (200, 204)
        await _round_after(api, host["id"], "work")
        assert api.get(f"/api/meetings/{meeting_id}").json()["status"] == "cancelled"


async def test_500_events_then_later_rounds_fetch_only_what_changed(
    proc: FoyerProcess, dav: Radicale
) -> None:
    host = proc.create_host("Ada Busy")
    personal = f"{BASE}/l/{host['slug']}"
    url = dav.calendar("ada", "busy")
    client = dav.client("ada")
    for i in range(500):  # bounded: 500 PUTs from the user's side
        where = personal if i % 50 == 0 else f"Room {i}"
        body = event(f"busy-{i}@example", where, summary=f"Meeting {i}").decode()
        assert client.request(f"{url}busy-{i}.ics", "PUT", body).status == 201
    with proc.api() as api:
        assert _connect(api, host["id"], "work", url, "ada", "ada-pass").status_code == 201
        first = await _state(api, host["id"], "work", lambda s: s["last_ok"] is not None)
        assert first["events_seen"] == 500 and first["events_rewritten"] == 10
        # One sync report, five multigets of 100, ten writes.
        assert first["last_round_requests"] == 1 + 5 + 10
        quiet = await _round_after(api, host["id"], "work")
        assert quiet["last_round_changed"] == 0 and quiet["last_round_requests"] == 1
        changed = dav.get("ada", f"{url}busy-7.ics")
        assert changed is not None
        edited = _unfold(changed[0]).replace(b"Meeting 7", b"Meeting seven")
        assert dav.put("ada", f"{url}busy-7.ics", edited, changed[1]) in (200, 201, 204)
        one = await _round_after(api, host["id"], "work")
        assert one["last_round_changed"] == 1 and one["last_round_requests"] == 2
        assert one["events_rewritten"] == 10


async def test_a_wrong_password_is_a_clear_state_without_a_retry_storm(
    dav: Radicale, tmp_path: Any
) -> None:
    from tests.receiver import receiving

    with (
        valkey_server() as store,
        receiving() as receiver,
        spawn_foyer(store.url, {**ENV, "FOYER_WEBHOOK_ALLOW": "127.0.0.1"}) as foyer,
        foyer.api() as api,
    ):
        made = api.post(
            "/api/webhooks", json={"url": receiver.url, "events": ["calendar.sync_failed"]}
        )
        assert made.status_code == 201
        host = foyer.create_host("Ada Locked Out")
        url = dav.calendar("ada", "locked")
        assert _connect(api, host["id"], "work", url, "ada", "ada-pass").status_code == 201
        await _state(api, host["id"], "work", lambda s: s["last_ok"] is not None)
        dav.users["ada"] = "changed-pass"  # the user revokes the app password
        dav.write_users()
        failed = await _round_after(api, host["id"], "work")
        assert failed["error"] == "refused" and failed["failures"] == 1
        assert "credentials" in (failed["error_message"] or "")
        # Backoff with jitter: the next try is at least the interval away, and
        # over a few seconds only a few tries are made (no storm).
        assert failed["next"] - failed["last_sync"] >= 1000
        await asyncio.sleep(4)
        later = (await asyncio.to_thread(api.get, f"/api/hosts/{host['id']}/calendars")).json()
        assert later["calendars"][0]["state"]["failures"] <= 3
        await receiver.until(lambda: len(receiver.delivered(host["id"])) >= 1)
        (hook,) = receiver.delivered(host["id"]).values()  # once per failure streak
        assert hook.event["type"] == "calendar.sync_failed"
        assert (
            hook.event["data"]["reason"] == "refused" and hook.event["data"]["calendar"] == "work"
        )
        assert "changed-pass" not in foyer.log() and "ada-pass" not in foyer.log()

        dav.users["ada"] = "ada-pass"  # the right password again: back to normal
        dav.write_users()
        healed = await _round_after(api, host["id"], "work")
        assert healed["error"] is None and healed["failures"] == 0


async def test_kill_9_mid_round_another_process_finishes_with_no_duplicate_meeting(
    dav: Radicale,
) -> None:
    env = {**ENV, "FOYER_CALENDAR_LEASE": "2"}  # a dead holder's lease runs out soon
    count = 120
    url = dav.calendar("ada", "crash")
    with valkey_server() as store:
        redis = SyncRedis.from_url(store.url)
        a = FoyerProcess(store.url, env).start()
        try:
            host = a.create_host("Ada Crash")
            personal = f"{BASE}/l/{host['slug']}"
            client = dav.client("ada")
            for i in range(count):  # bounded
                body = event(f"crash-{i}@example", personal, summary=f"Call {i}").decode()
                assert client.request(f"{url}crash-{i}.ics", "PUT", body).status == 201
            meetings = f"foyer:{{h:{host['id']}}}:meetings"
            with a.api() as api:
                assert _connect(api, host["id"], "work", url, "ada", "ada-pass").status_code == 201
            async with asyncio.timeout(WAIT):
                while True:  # until the round is under way
                    if redis.zcard(meetings) >= 5:
                        break
                    await asyncio.sleep(0.01)
            a.stop(signal.SIGKILL)
            made_before = redis.zcard(meetings)
            assert made_before < count, "the round ended before the kill; nothing was tested"
        finally:
            a.stop(signal.SIGKILL)
        with (
            spawn_foyer(
                store.url, {**env, "FOYER_SECRET": a.secret, "FOYER_API_KEY": a.api_key}
            ) as b,
            b.api() as api,
        ):
            state = await _state(api, host["id"], "work", lambda s: s["last_ok"] is not None)
            assert state["error"] is None
        links: list[str] = []
        for i in range(count):
            found = dav.get("ada", f"{url}crash-{i}.ics")
            assert found is not None
            text = _unfold(found[0]).decode()
            assert personal not in text
            links += JOIN.findall(text)
        assert len(links) == count and len(set(links)) == count  # one meeting per event
        assert redis.zcard(meetings) == count  # and not one more
        remembered = redis.hlen(f"foyer:{{h:{host['id']}}}:cal:work:events")
        assert remembered == count  # the events rewritten before the kill were adopted
        redis.close()


async def test_a_server_down_or_stalled_backs_off_and_misses_nothing(dav: Radicale) -> None:
    """Down (nothing listens) and then stalled (the suite's fault proxy holds
    every byte: requests time out): each is a clear state; once the server is
    back, the next round finds what was waiting."""
    from tests.chaos.proxy import FaultProxy

    port = int(dav.url.rsplit(":", 1)[1])
    env = {**ENV, "FOYER_CALENDAR_TIMEOUT": "1"}
    with (
        FaultProxy(port) as proxy,
        valkey_server() as store,
        spawn_foyer(store.url, env) as foyer,
        foyer.api() as api,
    ):
        host = foyer.create_host("Ada Outage")
        personal = f"{BASE}/l/{host['slug']}"
        url = dav.calendar("ada", "outage")
        via_proxy = url.replace(f":{port}/", f":{proxy.port}/")
        assert _connect(api, host["id"], "work", via_proxy, "ada", "ada-pass").status_code == 201
        await _state(api, host["id"], "work", lambda s: s["last_ok"] is not None)

        assert dav.put("ada", f"{url}during.ics", event("during@example", personal)) == 201
        proxy.blackhole()  # a stalled server: every request times out
        stalled = await _round_after(api, host["id"], "work")
        assert stalled["error"] == "unreachable" and stalled["failures"] == 1
        assert "Timeout" in (stalled["error_message"] or "")
        proxy.heal()

        dav.stop()  # now down: nothing answers at all
        try:
            down = await _round_after(api, host["id"], "work")
            assert down["error"] == "unreachable" and down["failures"] == 2
            assert down["next"] - down["last_sync"] >= 2000  # backing off
        finally:
            dav.start()
        back = await _round_after(api, host["id"], "work")
        assert back["error"] is None and back["events_rewritten"] == 1
        rewritten = dav.get("ada", f"{url}during.ics")
        assert rewritten is not None and len(JOIN.findall(_unfold(rewritten[0]).decode())) == 1
