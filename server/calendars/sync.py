"""The sync worker: every connected calendar, one round per interval, in
whichever process claims it (``CalendarStore.claim_due``) and holds its lease.

A round asks the CalDAV server what changed since the stored sync token,
reads the changed events (a few ``calendar-multiget`` requests), and:

- an event it never rewrote goes through the calendar-rewrite rules
  (``server.meetings.calendar.rewrite_ics``): a one-off event holding the
  host's personal link gets its dedicated meeting (made once per event key,
  however often it is seen, by whichever process) and is written back with
  ``If-Match``; on 412 (the user changed it meanwhile) it is read and decided
  again, never overwritten;
- an event it rewrote takes its meeting along: moved or retitled, the meeting
  follows; cancelled or deleted, the meeting is cancelled;
- the round's results are committed fenced by the lease's token: a process
  that was paused past its lease writes nothing (and checks the lease before
  each write to the calendar).

Failures back off with jitter (a refused password waits longest: no retry
storm), show in the calendar's state, and leave as a ``calendar.sync_failed``
webhook once per failure streak.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from protocol.errors import (
    CalendarRefused,
    CalendarUnreachable,
    FoyerError,
    InvalidCalendar,
    NotACalendarUrl,
)
from server.access.credentials import CredentialBox, UnreadableSecret
from server.access.targets import AllowList, RefusedTarget, check_target
from server.calendars.dav import CalDav, CalDavError, NotACalendar, PreconditionFailed, Refused
from server.meetings.calendar import (
    DedicatedLink,
    EventFacts,
    MeetingMaker,
    PersonalLinks,
    PlannedEvent,
    event_facts,
    rewrite_ics,
)
from server.meetings.planned import Meeting, PlannedMeetings, join_link
from server.storage.calendars import CalendarStore, Connection, SyncedEvent
from server.storage.hosts import HostStore
from server.storage.values import now_ms

log = logging.getLogger("foyer.calendars")

MULTIGET_BATCH = 100  # hrefs per calendar-multiget request
WRITE_TRIES = 3  # an event the user keeps changing under us is left for the next round
DEFAULT_MINUTES = 30
MAX_BACKOFF_S = 3600.0
REFUSED_BACKOFF_S = 6 * 3600.0  # a wrong password: try again rarely

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]  # kind, data (names its host)
DavFactory = Callable[[Connection, str, float], CalDav]


class Fenced(Exception):
    """The lease is another process's now: stop, write nothing."""


def _dav(connection: Connection, password: str, timeout: float) -> CalDav:
    return CalDav(connection.url, connection.username, password, timeout)


@dataclass(frozen=True, slots=True)
class SyncConfig:
    interval_s: float = 60.0
    timeout_s: float = 15.0
    lease_s: float = 120.0
    bases: tuple[str, ...] = ()  # the public base URLs personal links are written with
    join_base: str = ""  # the base of dedicated meetings' join links
    allow: tuple[str, ...] = ()  # hosts/CIDRs a private-address CalDAV server may use


@dataclass(slots=True)
class _Round:
    """What one round learned, committed at its end."""

    etags: dict[str, str] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    events: dict[str, SyncedEvent] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    seen: int = 0
    rewritten: int = 0


def _ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


def _times(
    starts: datetime | None, ends: datetime | None, minutes: Any
) -> tuple[int | None, int | None]:
    start = _ms(starts)
    if start is None:
        return None, None
    end = _ms(ends)
    if end is None or end <= start:
        end = start + (minutes if isinstance(minutes, int) else DEFAULT_MINUTES) * 60_000
    return start, end


def _failure(exc: Exception) -> tuple[str, str]:
    """(reason, message) of a failed round; the message is safe to show."""
    if isinstance(exc, CalDavError):
        return exc.reason, str(exc)
    if isinstance(exc, UnreadableSecret):
        return "unreadable_credentials", "the stored password no longer decrypts: reconnect"
    if isinstance(exc, FoyerError):
        return "failed", str(exc)
    log.error("calendar round failed", exc_info=exc)
    return "internal", "an internal error (see the server log)"


def meeting_key(event_key: str) -> str:
    """The same key the rewrite API uses: one meeting per (host, event), however
    the event reached Foyer."""
    return "cal:" + hashlib.sha256(event_key.encode()).hexdigest()


class CalendarSync:
    def __init__(
        self,
        store: CalendarStore,
        box: CredentialBox,
        hosts: HostStore,
        meetings: PlannedMeetings,
        config: SyncConfig,
        emit: Emit,
        dav: DavFactory = _dav,
    ) -> None:
        self._store = store
        self._box = box
        self._hosts = hosts
        self._meetings = meetings
        self.config = config
        self._emit = emit
        self._dav = dav

    @property
    def _lease_ms(self) -> int:
        return int(self.config.lease_s * 1000)

    async def run_due(self) -> int:
        """One look for due calendars; returns how many rounds ran here."""
        claimed = await self._store.claim_due(self._lease_ms)
        results = await asyncio.gather(
            *(self.sync(host, name) for host, name in claimed), return_exceptions=True
        )
        for (host, name), result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("calendar %s of %s: %s", name, host, type(result).__name__)
        return sum(1 for r in results if r is True)

    async def sync(self, host: str, name: str) -> bool:
        """One round of one calendar, if its lease is free (False: another holds it)."""
        token = await self._store.lease(host, name, self._lease_ms)
        if not token:
            return False
        before = await self._store.state(host, name)
        failures = int(before.get("failures") or 0)
        state: dict[str, Any] = {"last_sync": now_ms()}
        done = _Round()
        delay = self.config.interval_s
        requests = 0
        try:
            token_after, requests = await self._round(host, name, token, done)
        except Fenced:
            return False  # the newer holder decides; it writes the state
        except Exception as exc:  # every failure is a state the host can see, and a backoff
            reason, message = _failure(exc)
            requests = getattr(exc, "requests", 0)
            failures += 1
            ceiling = REFUSED_BACKOFF_S if isinstance(exc, Refused) else MAX_BACKOFF_S
            delay = min(self.config.interval_s * 2 ** min(failures, 16), ceiling)
            delay = random.uniform(delay / 2, delay)
            state.update(failures=failures, error=reason, error_message=message)
            if failures == 1 or before.get("error") != reason:
                await self._failed(host, name, reason, message, failures)
        else:
            state.update(
                sync_token=token_after,
                last_ok=state["last_sync"],
                failures=0,
                error="",
                error_message="",
                seen=int(before.get("seen") or 0) + done.seen,
                rewritten=int(before.get("rewritten") or 0) + done.rewritten,
                last_changed=done.seen,
            )
        state["last_requests"] = requests
        state["next"] = now_ms() + int(delay * 1000)
        committed = await self._store.commit(
            host,
            name,
            token,
            state=state,
            etags=done.etags,
            gone=done.gone,
            events=done.events,
            unmapped=done.unmapped,
            release=True,
        )
        if committed:
            await self._store.schedule(host, name, int(state["next"]))
        return committed

    async def _failed(self, host: str, name: str, reason: str, message: str, failures: int) -> None:
        log.warning("calendar %s of %s failed: %s", name, host, reason)
        data = {"host": host, "calendar": name, "reason": reason, "message": message,
                "failures": failures}  # fmt: skip
        try:
            await self._emit("calendar.sync_failed", data)
        except Exception as exc:  # the webhook must not hide the state
            log.warning("calendar.sync_failed not queued: %s", type(exc).__name__)

    async def _round(self, host: str, name: str, token: int, done: _Round) -> tuple[str, int]:
        connection = await self._store.get(host, name)
        if connection is None:
            raise Fenced()  # disconnected meanwhile: nothing to keep
        password = self._box.open(connection.sealed)
        memory = await self._store.memory(host, name)
        record = await self._hosts.require_host(host)
        links = PersonalLinks(bases=self.config.bases, slugs=(record["slug"], *record["previous"]))
        dav = self._dav(connection, password, self.config.timeout_s)
        try:
            changes = await asyncio.to_thread(dav.changes, memory.sync_token, memory.etags)
            for href in changes.deleted:
                synced = memory.events.get(href)
                if synced is not None:
                    await self._cancel(host, synced.meeting)
                    done.unmapped.append(href)
                done.gone.append(href)
            wanted = [h for h, e in changes.changed.items() if memory.etags.get(h) != e or not e]
            done.seen = len(wanted)
            for start in range(0, len(wanted), MULTIGET_BATCH):
                batch = wanted[start : start + MULTIGET_BATCH]
                fetched = await asyncio.to_thread(dav.fetch_many, batch)
                for href in batch:
                    found = fetched.get(href)
                    if found is None:
                        continue  # deleted between the report and the read
                    synced = memory.events.get(href)
                    await self._event(
                        host, name, token, dav, links, record, synced, href, found, done
                    )
            return changes.token, dav.requests
        except CalDavError as exc:
            exc.requests = dav.requests  # type: ignore[attr-defined]
            raise
        finally:
            dav.close()

    async def _event(
        self,
        host: str,
        name: str,
        token: int,
        dav: CalDav,
        links: PersonalLinks,
        record: Any,
        synced: SyncedEvent | None,
        href: str,
        found: tuple[bytes, str],
        done: _Round,
    ) -> None:
        """Decide one changed event: follow it, or rewrite it (If-Match, re-read on 412)."""
        for _ in range(WRITE_TRIES):
            data, etag = found
            try:
                facts = event_facts(data)
            except InvalidCalendar:
                done.etags[href] = etag  # not ours to mend; look again when it changes
                return
            if synced is not None:
                await self._follow(host, synced, facts)
                done.etags[href] = etag
                return
            made: list[SyncedEvent] = []
            make = self._maker(host, str(record["name"]), made)
            try:
                result = await rewrite_ics(data, links, make)
            except InvalidCalendar:
                done.etags[href] = etag
                return
            if not made or result.ics == data:
                await self._adopt(host, facts, href, done)
                done.etags[href] = etag
                return
            # Fencing: only the lease's holder writes to the calendar (and renews it).
            if not await self._store.lease(host, name, self._lease_ms, token):
                raise Fenced()
            try:
                new_etag = await asyncio.to_thread(dav.store, href, result.ics, etag)
            except PreconditionFailed:
                again = await asyncio.to_thread(dav.fetch, href)
                if again is None:
                    return  # deleted meanwhile: the next round sees it gone
                found = again
                continue  # the user's edit stands; decide again on what is there now
            if not new_etag:
                after = await asyncio.to_thread(dav.fetch, href)
                new_etag = after[1] if after else ""
            done.etags[href] = new_etag
            done.events[href] = made[0]
            done.rewritten += 1
            return

    async def _adopt(self, host: str, facts: list[EventFacts], href: str, done: _Round) -> None:
        """An event that already holds one of this host's dedicated join links,
        made for that very event (a process died after writing it, before its
        round was committed): remember it, so it is followed from now on."""
        marker = f"{self.config.join_base}/m/"
        for fact in facts:
            if marker not in fact.text:
                continue
            meeting = await self._meetings.by_key(host, meeting_key(fact.key))
            if meeting is not None and join_link(self.config.join_base, meeting.id) in fact.text:
                done.events[href] = SyncedEvent(fact.key, meeting.id)
                await self._follow(host, done.events[href], facts)
                return

    def _maker(self, host: str, host_name: str, made: list[SyncedEvent]) -> MeetingMaker:
        """Makes (or finds again: one per event key) an event's meeting, and
        notes each in ``made``."""

        async def make(event: PlannedEvent) -> DedicatedLink:
            title = (event.title or "").strip()[:200] or f"Meeting with {host_name}"
            starts, ends = _times(event.starts_at, event.ends_at, event.options.get("duration"))
            meeting, _ = await self._meetings.create(
                host, title, starts, ends, key=meeting_key(event.key)
            )
            made.append(SyncedEvent(event.key, meeting.id))
            return DedicatedLink(meeting.id, join_link(self.config.join_base, meeting.id))

        return make

    async def _follow(self, host: str, synced: SyncedEvent, facts: list[EventFacts]) -> None:
        """An event Foyer rewrote changed: its meeting follows (times, title, cancel)."""
        fact = next((f for f in facts if f.key == synced.key), None)
        meeting = await self._meetings.find_for(host, synced.meeting)
        if meeting is None or meeting.cancelled:
            return
        if fact is None or fact.cancelled:
            await self._meetings.cancel(meeting)
            return
        starts, ends = _times(fact.starts_at, fact.ends_at, None)
        title = (fact.title or "").strip()[:200] or meeting.title
        moved = starts is not None and (starts, ends) != (meeting.starts_at, meeting.ends_at)
        if moved or title != meeting.title:
            assert starts is not None or not moved
            await self._reschedule(meeting, starts, ends, title)

    async def _reschedule(
        self, meeting: Meeting, starts: int | None, ends: int | None, title: str
    ) -> None:
        if starts is None or ends is None:
            starts, ends = meeting.starts_at, meeting.ends_at
        if starts is None or ends is None:
            return  # a meeting with no time cannot be moved; its title stays
        await self._meetings.reschedule(meeting, starts, ends, title)

    async def _cancel(self, host: str, meeting_id: str) -> None:
        meeting = await self._meetings.find_for(host, meeting_id)
        if meeting is not None and not meeting.cancelled:
            await self._meetings.cancel(meeting)

    # -- connecting (server/web/calendars_api.py) -------------------------------------

    async def connect(
        self, host: str, name: str, url: str, username: str, password: str
    ) -> Connection:
        """Check the calendar at once (a wrong password or a URL that is no
        calendar is refused, never stored), then keep it, sealed, and sync now."""
        try:
            await check_target(url, AllowList(self.config.allow))
        except RefusedTarget as exc:
            raise NotACalendarUrl(f"url: {exc}") from None
        candidate = Connection(host, name, url, username, "", now_ms())
        dav = self._dav(candidate, password, self.config.timeout_s)
        try:
            await asyncio.to_thread(dav.check)
        except Refused:
            raise CalendarRefused(
                "the calendar server refused this username and password"
            ) from None
        except NotACalendar as exc:
            raise NotACalendarUrl(str(exc)) from None
        except CalDavError as exc:
            raise CalendarUnreachable(str(exc)) from None
        finally:
            dav.close()
        connection = Connection(host, name, url, username, self._box.seal(password), now_ms())
        await self._store.put(connection)
        return connection

    async def status(self, host: str) -> list[tuple[Connection, dict[str, str]]]:
        found = await self._store.all(host)
        states = [await self._store.state(host, c.name) for c in found]
        return list(zip(found, states, strict=True))

    async def disconnect(self, host: str, name: str) -> bool:
        return await self._store.delete(host, name)

    async def sync_soon(self, host: str, name: str) -> bool:
        """Make its next round due now (False: no such calendar)."""
        if await self._store.get(host, name) is None:
            return False
        await self._store.schedule(host, name, now_ms())
        return True
