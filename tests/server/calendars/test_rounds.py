"""Calendar sync rounds driven in this process, on real Valkey and a real
Radicale, where a test must act at an exact point of a round: the user's
edit landing between Foyer's read and Foyer's write, and a lease lost to a
newer holder (fencing)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.fernet import Fernet
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from server.access.credentials import CredentialBox, derived_key
from server.calendars.dav import CalDav
from server.calendars.sync import CalendarSync, SyncConfig
from server.meetings.events import MeetingEvents
from server.meetings.planned import PlannedMeetings
from server.meetings.provider import MeetingProvider, TemplateProvider
from server.storage import scripts
from server.storage.batcher import Batcher
from server.storage.calendars import CalendarStore, Connection
from server.storage.hosts import HostStore
from tests.caldav_server import Radicale, radicale_server
from tests.server.calendars.test_sync import BASE, JOIN, _unfold, event


@pytest.fixture(scope="module")
def dav() -> Iterator[Radicale]:
    with radicale_server({"ada": "ada-pass"}) as server:
        yield server


@dataclass
class Parts:
    batch: Batcher
    hosts: HostStore
    store: CalendarStore
    meetings: PlannedMeetings
    box: CredentialBox
    emitted: list[tuple[str, dict[str, Any]]]

    def sync(self, dav_factory: Any = None) -> CalendarSync:
        config = SyncConfig(
            interval_s=1, timeout_s=10, lease_s=30, bases=(BASE,), join_base=BASE,
            allow=("127.0.0.1",),
        )  # fmt: skip

        async def emit(kind: str, data: dict[str, Any]) -> None:
            self.emitted.append((kind, data))

        extra = {"dav": dav_factory} if dav_factory else {}
        return CalendarSync(self.store, self.box, self.hosts, self.meetings, config, emit, **extra)


@pytest.fixture
async def parts(redis_url: str) -> AsyncIterator[Parts]:
    redis = Redis.from_url(redis_url)
    batch = Batcher(redis, scripts.load())
    await batch.start()
    template = TemplateProvider(MeetingProvider("https://meet.example.org/{meeting_id}"))
    meetings = PlannedMeetings(batch, {"template": template}, "template", MeetingEvents())
    try:
        yield Parts(
            batch, HostStore(batch), CalendarStore(batch), meetings,
            CredentialBox(None, secrets.token_urlsafe(16)), [],
        )  # fmt: skip
    finally:
        await batch.stop()
        await redis.aclose()


async def _host(parts: Parts) -> dict[str, Any]:
    host = "cal-" + secrets.token_hex(5)
    record = await parts.hosts.create_host(host, "Ada Racer", None)
    return dict(record)


async def test_the_users_edit_during_a_write_survives_and_is_decided_again(
    parts: Parts, dav: Radicale
) -> None:
    host = await _host(parts)
    personal = f"{BASE}/l/{host['slug']}"
    url = dav.calendar("ada", "race-" + secrets.token_hex(3))
    href = f"{url}race.ics"
    assert dav.put("ada", href, event("race@example", personal)) == 201
    edits: list[int] = []

    class UserEditsMeanwhile(CalDav):
        """Right after Foyer has read the event, the user saves a change."""

        def fetch_many(self, hrefs: list[str]) -> dict[str, tuple[bytes, str]]:
            found = super().fetch_many(hrefs)
            if not edits:
                current = dav.get("ada", href)
                assert current is not None
                edited = _unfold(current[0]).replace(b"Review with Ann", b"Edited by Ada")
                edits.append(dav.put("ada", href, edited, current[1]))
            return found

    def factory(connection: Connection, password: str, timeout: float) -> CalDav:
        return UserEditsMeanwhile(connection.url, connection.username, password, timeout)

    sync = parts.sync(factory)
    await sync.connect(host["id"], "work", url, "ada", "ada-pass")
    assert await sync.sync(host["id"], "work")
    assert edits and edits[0] in (200, 201, 204)  # the user's save went through first
    after = dav.get("ada", href)
    assert after is not None
    text = _unfold(after[0]).decode()
    assert "SUMMARY:Edited by Ada" in text  # the user's edit survived
    assert personal not in text and len(set(JOIN.findall(text))) == 1  # decided again
    state = await parts.store.state(host["id"], "work")
    assert state["rewritten"] == "1" and state["error"] == ""


async def test_a_round_that_lost_its_lease_writes_nothing(
    parts: Parts, dav: Radicale, redis_url: str
) -> None:
    """A process paused past its lease wakes up: the newer holder's token is
    higher, so neither the calendar nor the store takes the old round's writes."""
    host = await _host(parts)
    personal = f"{BASE}/l/{host['slug']}"
    url = dav.calendar("ada", "fenced-" + secrets.token_hex(3))
    href = f"{url}fenced.ics"
    assert dav.put("ada", href, event("fenced@example", personal)) == 201
    before = dav.get("ada", href)

    lease_key = f"foyer:{{h:{host['id']}}}:cal:work:lease"
    fence_key = f"foyer:{{h:{host['id']}}}:cal-fence"
    taken: list[int] = []

    class PausedPastItsLease(CalDav):
        """While this round is between its read and its write, its lease runs
        out and another process takes the calendar (the real script, a real
        second client)."""

        def fetch_many(self, hrefs: list[str]) -> dict[str, tuple[bytes, str]]:
            found = super().fetch_many(hrefs)
            other = SyncRedis.from_url(redis_url)
            try:
                other.delete(lease_key)  # expired
                lease = scripts.load()["cal_lease"]
                taken.append(int(other.eval(lease, 2, lease_key, fence_key, 30_000, "")))
            finally:
                other.close()
            return found

    def factory(connection: Connection, password: str, timeout: float) -> CalDav:
        return PausedPastItsLease(connection.url, connection.username, password, timeout)

    sync = parts.sync(factory)
    await sync.connect(host["id"], "work", url, "ada", "ada-pass")
    assert await sync.sync(host["id"], "work") is False
    assert taken and taken[0] > 1  # the newer holder's token is higher
    assert dav.get("ada", href) == before  # the calendar was not written
    assert await parts.store.state(host["id"], "work") == {}  # nor the store


async def test_a_server_without_sync_reports_is_followed_by_etags(
    parts: Parts, dav: Radicale
) -> None:
    """Where a server has no RFC 6578 report, a round compares ETags from a
    PROPFIND: only what changed is read; a cancelled event cancels its meeting."""
    host = await _host(parts)
    personal = f"{BASE}/l/{host['slug']}"
    url = dav.calendar("ada", "etags-" + secrets.token_hex(3))
    for i in range(3):
        assert dav.put("ada", f"{url}e{i}.ics", event(f"e{i}@example", personal)) == 201
    reads: list[list[str]] = []

    class NoSyncReport(CalDav):
        def changes(self, token: str, known: dict[str, str]) -> Any:
            return self._by_etags(known)

        def fetch_many(self, hrefs: list[str]) -> dict[str, tuple[bytes, str]]:
            reads.append(sorted(hrefs))
            return super().fetch_many(hrefs)

    def factory(connection: Connection, password: str, timeout: float) -> CalDav:
        return NoSyncReport(connection.url, connection.username, password, timeout)

    sync = parts.sync(factory)
    await sync.connect(host["id"], "work", url, "ada", "ada-pass")
    assert await sync.sync(host["id"], "work")
    assert len(reads[-1]) == 3
    state = await parts.store.state(host["id"], "work")
    assert state["rewritten"] == "3" and state["sync_token"] == ""
    assert await sync.sync(host["id"], "work")  # nothing changed: nothing read
    assert len(reads) == 1 and (await parts.store.state(host["id"], "work"))["last_requests"] == "1"

    href = f"{url}e1.ics"
    current = dav.get("ada", href)
    assert current is not None
    text = _unfold(current[0]).decode()
    (meeting_id,) = set(JOIN.findall(text))
    cancelled = text.replace("END:VEVENT", "STATUS:CANCELLED\nEND:VEVENT").encode()
    assert dav.put("ada", href, cancelled, current[1]) in (200, 201, 204)
    assert await sync.sync(host["id"], "work")
    assert reads[-1] == [href.split(dav.url, 1)[1]]  # only the changed one
    meeting = await parts.meetings.find_for(host["id"], meeting_id)
    assert meeting is not None and meeting.cancelled


async def test_a_password_sealed_with_another_key_is_a_clear_state(
    parts: Parts, dav: Radicale
) -> None:
    """The deployment's key changed without the old one kept: the round says
    to reconnect, and the password is not guessed or logged."""
    host = await _host(parts)
    url = dav.calendar("ada", "rekeyed-" + secrets.token_hex(3))
    await parts.sync().connect(host["id"], "work", url, "ada", "ada-pass")
    parts.box = CredentialBox(None, secrets.token_urlsafe(16))  # another key
    assert await parts.sync().sync(host["id"], "work")
    state = await parts.store.state(host["id"], "work")
    assert state["error"] == "unreadable_credentials" and state["failures"] == "1"
    assert "reconnect" in state["error_message"]
    assert [kind for kind, _ in parts.emitted] == ["calendar.sync_failed"]
    # Rotating keys the documented way keeps it readable: new first, old after.
    sealed = CredentialBox(None, "old-secret").seal("p")
    old_key = derived_key("old-secret").decode()
    both = CredentialBox(",".join([Fernet.generate_key().decode(), old_key]), "x")
    assert both.open(sealed) == "p"
