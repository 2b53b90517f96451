"""The lobby in Redis: knocks, transitions, snapshots, presence, leases and
the schedules (expiry, lapsed leases, email).

Every command goes through the ``Batcher`` (one pipeline per loop pass on
one connection; DESIGN.md: never a pool connection per message). Atomic
steps are the Lua scripts in ``lua/``, which publish the doorbell events of
``protocol.events``: the store is the truth and pub/sub only the doorbell.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict, Unpack, cast

from protocol import lobby
from protocol.errors import AlreadyResolved, NotInMeeting, UnknownGuest
from server import ids
from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.hosts import HostRecord, record_from_hash
from server.storage.values import now_ms, pack, text, unpack

log = logging.getLogger("foyer.store")

CLAIM_RETRY_MS = 10_000  # a claimed schedule entry comes back if not done by then
SWEEP_LIMIT = 200


class Transit(TypedDict, total=False):
    """How a transition is applied: the socket (``disconnect``, ``resume``), the
    resume secret, the resume window, the meeting a merge was built for, and the
    time (``disconnect`` fixes it, so its expiry entry matches the deadline)."""

    conn: str
    resume: str
    window_ms: int
    merge_id: str
    now: int | None
    by: str  # who answered, for the webhook: "device:<id>", "api" or "email"


class KnockVerdict(StrEnum):
    OK = "ok"
    BYPASS = "bypass"
    LOCKED = "locked"
    BLOCKED = "blocked"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_LINK = "unknown_link"
    COOLING = "cooling"  # addition: denied within the host's deny cool-down


@dataclass(frozen=True, slots=True)
class KnockResult:
    verdict: KnockVerdict
    position: int = 0
    score: int = 0
    host_online: bool = False
    raid_started: bool = False  # this knock went over the raid threshold first


@dataclass(frozen=True, slots=True)
class Lobby:
    """A host's lobby rules for one knock (its settings, read by the caller)."""

    identity: str = ""  # "v:<email>" or "a:<address>": what a deny cools down
    deny_cooldown_ms: int = 0
    raid_threshold: int = 0  # knocks per minute (0 = off)
    raid_autolock: bool = False
    max_wait_ms: int = 0  # 0 = off
    timeout_outcome: dict[str, Any] | None = None  # what a time_out sends the guest


@dataclass(frozen=True, slots=True)
class Step:
    """The result of one lobby event on one guest."""

    verdict: lobby.Verdict
    state: str = ""
    outcome: dict[str, Any] | None = None  # the stored outcome, for a late resume
    position: int = 0
    score: int = 0
    counter: int = 0
    held: dict[str, Any] | None = None  # on resume: the guest's hold, if any

    @property
    def ok(self) -> bool:
        return self.verdict is lobby.Verdict.OK


@dataclass(frozen=True, slots=True)
class Known:
    """A guest a process knew of: its state and, once answered, its outcome."""

    state: lobby.GuestState
    outcome: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A host's whole lobby, read in one step (``snapshot.lua``)."""

    record: HostRecord | None
    counter: int
    state: str
    meeting: dict[str, Any] | None
    online: bool
    queue: list[dict[str, Any]] = field(default_factory=list)  # guests, oldest first
    known: dict[str, Known] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)  # every queued guest, oldest first


BULK_SLICE = 500  # guests per step of admit all / deny all
MAX_BULK_SLICES = 1000  # 500,000 guests: far above any lobby
_OKS = (lobby.Verdict.OK.value.encode(), lobby.Verdict.OK.value)
_VERDICTS = {v.value.encode(): v for v in lobby.Verdict} | {v.value: v for v in lobby.Verdict}


def _step(reply: list[Any]) -> Step:
    verdict = _VERDICTS.get(reply[0]) or lobby.Verdict(text(reply[0]))
    state = text(reply[1]) if len(reply) > 1 else ""
    if verdict is lobby.Verdict.ALREADY_RESOLVED:
        raw = reply[2] if len(reply) > 2 else b""
        return Step(verdict, state, unpack(raw) if raw else None)
    if verdict is lobby.Verdict.OK and len(reply) > 2:
        held = unpack(reply[5]) if len(reply) > 5 and reply[5] else None
        return Step(verdict, state, None, int(reply[2]), int(reply[3]), int(reply[4]), held)
    return Step(verdict, state)


def _guests(flat: list[Any]) -> list[dict[str, Any]]:
    """Guest cards from ``info, state, held, ...`` (away and held ones marked)."""
    guests: list[dict[str, Any]] = []
    for i in range(0, len(flat), 3):
        guest: dict[str, Any] = unpack(flat[i])
        if text(flat[i + 1]) == lobby.GuestState.AWAY:
            guest["away"] = True  # dropped, within its resume window
        if flat[i + 2]:
            guest["held"] = unpack(flat[i + 2])  # addition: on hold, keeps its place
        guests.append(guest)
    return guests


async def _steps(replies: Awaitable[list[Any]]) -> list[Step]:
    return [_step(r) for r in await replies]


def raise_for(step: Step) -> Step:
    """A host reply's step, or the protocol error it answers."""
    if step.ok:
        return step
    if step.verdict is lobby.Verdict.NOT_IN_MEETING:
        raise NotInMeeting()
    if step.verdict is lobby.Verdict.ALREADY_RESOLVED:
        raise AlreadyResolved()
    if step.verdict is lobby.Verdict.INVALID:
        raise AlreadyResolved("this guest is no longer waiting")
    raise UnknownGuest()


class Store:
    """Foyer's lobby state in Redis/Valkey."""

    def __init__(
        self,
        batch: Batcher,
        *,
        sharded: bool = False,
        lease_ms: int = 30_000,
        outbox: bool = False,
    ) -> None:
        self.batch = batch
        self.lease_ms = lease_ms
        self.publish_command = "SPUBLISH" if sharded else "PUBLISH"
        self.outbox = outbox  # webhooks on: the scripts also append to each host's outbox

    def write_outbox(self, on: bool) -> None:
        """Turn the scripts' outbox writes on (some webhook endpoint exists) or off."""
        self.outbox = on

    def _outbox_key(self, host: str) -> str:
        """The outbox argument of a script: the stream's key, or "" (webhooks off)."""
        return keys.outbox(host) if self.outbox else ""

    def _ring_outbox(self, host: str) -> None:
        """Mark the host's outbox due, queued right behind the script that may have
        appended to it, in the same pipeline (so no crash of this process can put
        one in without the other). On a Cluster the index and the stream live on
        different slots, hence two commands; a mark with nothing behind it costs the
        worker one empty read. ``LT``: a host already marked sooner stays so, and
        one claimed (marked in the future) comes due now, which keeps its claimer's
        ``done`` from dropping the mark."""
        if self.outbox:
            self.batch.fire("ZADD", keys.OUTBOX_HOSTS, "LT", now_ms(), host)

    async def ping(self) -> bool:
        return bool(await self.batch.call("PING"))

    # -- the waiting room ---------------------------------------------------

    async def knock(
        self,
        host: str,
        guest: str,
        info: dict[str, Any],
        *,
        resume: str,
        conn: str,
        email: str,
        verified: bool,
        link_limit: int,
        address: str,
        address_limit: int,
        rules: Lobby | None = None,
    ) -> KnockResult:
        t = keys.tag(host)
        rules = rules or Lobby()
        now = now_ms()
        minute = now // 60_000
        if rules.max_wait_ms > 0:  # queued ahead of the knock, as ``disconnect`` does
            self.batch.fire("ZADD", keys.MAX_WAIT, now + rules.max_wait_ms, f"{host}\n{guest}")
        domain = email.rsplit("@", 1)[1] if "@" in email else ""
        pending = self.batch.script(
            "knock",
            [
                keys.host(host),
                f"{t}:q",
                keys.guest(host, guest),
                f"{t}:ev",
                f"{t}:presence",
                f"{t}:devices",
                f"{t}:rl:{minute}",
                f"{t}:block",
                f"{t}:allow",
                f"{t}:rl:ip:{address}:{minute}",
                f"{t}:block-unverified",
                f"{t}:denied",
                f"{t}:knocks",
                f"{t}:raid",
            ],
            [
                guest,
                pack(info),
                resume,
                now,
                keys.channel(host),
                self.publish_command,
                conn,
                email.lower(),
                domain.lower(),
                "1" if verified else "0",
                lobby.GUEST_RECORD_TTL_MS,
                link_limit,
                address_limit,
                self._outbox_key(host),
                rules.identity,
                rules.deny_cooldown_ms,
                rules.raid_threshold,
                "1" if rules.raid_autolock else "0",
                rules.max_wait_ms,
                pack(rules.timeout_outcome or {}),
                keys.knock_channel(host),
            ],
        )
        self._ring_outbox(host)
        reply = await pending
        verdict = KnockVerdict(text(reply[0]))
        if verdict is not KnockVerdict.OK:
            return KnockResult(verdict)
        started = len(reply) > 4 and int(reply[4]) == 1
        return KnockResult(verdict, int(reply[1]), int(reply[2]), int(reply[3]) > 0, started)

    def _transition_args(
        self,
        host: str,
        event: lobby.LobbyEvent,
        conn: str,
        resume: str,
        window_ms: int,
        merge: str,
        now: int | None = None,
        by: str = "",
    ) -> tuple[list[str], list[Any]]:
        t = keys.tag(host)
        keys_ = [f"{t}:q", f"{t}:presence", f"{t}:ev", f"{t}:denied"]
        when = now_ms() if now is None else now
        args: list[Any] = [event.value, when, keys.channel(host), self.publish_command]
        # The operation id makes the call idempotent: sent twice, it applies once.
        args += [conn, resume, window_ms, merge, keys.guest_prefix(host), ids.token_hex(8)]
        args += [self._outbox_key(host), by]
        return keys_, args

    def transition_command(
        self,
        host: str,
        event: lobby.LobbyEvent,
        guests: list[tuple[str, bytes]],
        **how: Unpack[Transit],
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of ``transition.lua`` for one call."""
        keys_, args = self._transition_args(
            host,
            event,
            how.get("conn", ""),
            how.get("resume", ""),
            how.get("window_ms", 30_000),
            how.get("merge_id", ""),
            how.get("now"),
            how.get("by", ""),
        )
        args.append("")
        for gid, payload in guests:
            keys_.append(keys.guest(host, gid))
            args += [gid, payload]
        return keys_, args

    def transition(
        self,
        host: str,
        event: lobby.LobbyEvent,
        guests: list[tuple[str, bytes]],
        **how: Unpack[Transit],
    ) -> Awaitable[list[Step]]:
        """Apply ``event`` to each (guest, payload); one ``Step`` per guest. The
        script is queued at once (it joins this loop pass's pipeline, behind
        whatever was queued before it); await the result."""
        keys_, args = self.transition_command(host, event, guests, **how)
        steps = _steps(self.batch.script("transition", keys_, args))
        self._ring_outbox(host)
        return steps

    async def transition_all(
        self,
        host: str,
        event: lobby.LobbyEvent,
        template: dict[str, Any],
        copied: tuple[str, ...],
        by: str = "",
    ) -> int:
        """Apply ``event`` to every guest queued now; each guest's outcome is
        ``template`` with the ``copied`` options of that guest put into its
        ``meeting`` (admit all: the same room, each guest's own title). How many
        guests it moved.

        A big lobby goes in slices of ``BULK_SLICE`` guests, each one short
        atomic step, all of them bounded by the newest score queued when it
        began (a guest who knocks meanwhile is not swept up): one script over
        10,000 guests held Redis, and the first guest's outcome, for seconds."""
        t = keys.tag(host)
        newest = await self.batch.call("ZRANGE", f"{t}:q", -1, -1, "WITHSCORES")
        if not newest:
            return 0
        last = (
            newest[0] if isinstance(newest[0], tuple | list) else newest
        )  # reply callbacks pair it
        upto = int(float(last[1]))
        moved = 0
        for _ in range(MAX_BULK_SLICES):  # bounded; the queue shrinks by a slice a step
            keys_, args = self._transition_args(host, event, "", "", 0, "", by=by)
            marker = f"*{BULK_SLICE}:{upto}"
            pending = self.batch.script(
                "transition", keys_, [*args, marker, pack(template), *copied]
            )
            self._ring_outbox(host)
            replies = await pending
            moved += sum(1 for r in replies if r[0] in _OKS)
            if len(replies) < BULK_SLICE:
                break
        return moved

    async def snapshot(
        self, host: str, known: list[str] | None = None, *, limit: int = 0
    ) -> Snapshot:
        """The host's lobby; ``queue`` holds the infos of the oldest ``limit``
        guests (0: all), ``ids`` every queued guest."""
        t = keys.tag(host)
        known = known or []
        reply = await self.batch.script(
            "snapshot",
            [keys.host(host), f"{t}:q", f"{t}:ev", f"{t}:presence", f"{t}:devices"],
            [now_ms(), keys.guest_prefix(host), limit, *known],
        )
        raw_host, counter, state, meeting, online, queue, found, ids = reply
        fields = {text(raw_host[i]): text(raw_host[i + 1]) for i in range(0, len(raw_host), 2)}
        guests = _guests(queue)
        outcomes: dict[str, Known] = {}
        for gid, i in zip(known, range(0, len(found), 2), strict=True):
            state_of = lobby.GuestState(text(found[i]) or lobby.GuestState.EXPIRED)
            outcomes[gid] = Known(state_of, unpack(found[i + 1]) if found[i + 1] else None)
        return Snapshot(
            record_from_hash(fields),
            int(counter),
            text(state) or "available",
            unpack(meeting) if meeting else None,
            int(online) > 0,
            guests,
            outcomes,
            [text(g) for g in ids],
        )

    async def page(
        self, host: str, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` queued guests after ``after`` (oldest first), and whether
        more follow."""
        infos, more = await self.batch.script(
            "page", [f"{keys.tag(host)}:q"], [keys.guest_prefix(host), after or "", limit]
        )
        return _guests(infos), bool(int(more))

    async def guest_info(self, host: str, guest: str) -> tuple[str, dict[str, Any]] | None:
        state, info = await self.batch.call("HMGET", keys.guest(host, guest), "state", "info")
        if state is None or info is None:
            return None
        return text(state), unpack(info)

    async def say(self, host: str, guest: str, line: str) -> None:
        verdict = lobby.Verdict(
            text(
                await self.batch.script(
                    "say",
                    [keys.guest(host, guest)],
                    [guest, line, keys.channel(host), self.publish_command],
                )
            )
        )
        if verdict is lobby.Verdict.ALREADY_RESOLVED:
            raise AlreadyResolved()
        if verdict is not lobby.Verdict.OK:
            raise UnknownGuest()

    # -- host presence and devices ------------------------------------------

    async def set_presence(self, host: str, state: str, meeting: dict[str, Any] | None) -> None:
        pending = self.batch.script(
            "presence",
            [f"{keys.tag(host)}:presence"],
            [
                state,
                pack(meeting) if meeting else "",
                (meeting or {}).get("id", ""),
                keys.channel(host),
                self.publish_command,
                self._outbox_key(host),
                secrets.token_hex(8),  # makes a resent call a no-op (one webhook)
            ],
        )
        self._ring_outbox(host)
        await pending

    async def presence(self, host: str) -> tuple[str, dict[str, Any] | None]:
        state, meeting = await self.batch.call(
            "HMGET", f"{keys.tag(host)}:presence", "state", "meeting"
        )
        return (text(state) or "available"), (unpack(meeting) if meeting else None)

    def device_up(self, host: str, device: str) -> None:
        """Queued, not awaited: it goes out in the same pipeline as the welcome's
        snapshot, ahead of it, so the snapshot counts this device online. The
        member says this process follows the knocks channel (``keys.KNOCK_LISTENER``)."""
        member = keys.KNOCK_LISTENER + device
        self.batch.fire("ZADD", f"{keys.tag(host)}:devices", now_ms() + self.lease_ms, member)

    def devices_refresh(self, devices: list[tuple[str, str]]) -> None:
        deadline = now_ms() + self.lease_ms
        for host, device in devices:
            member = keys.KNOCK_LISTENER + device
            self.batch.fire("ZADD", f"{keys.tag(host)}:devices", deadline, member)

    async def device_down(self, host: str, device: str) -> None:
        await self.batch.call("ZREM", f"{keys.tag(host)}:devices", keys.KNOCK_LISTENER + device)

    async def host_statuses(self, hosts: list[str]) -> dict[str, tuple[bool, str]]:
        """Each host's (online, presence state), in one pipeline."""
        now = now_ms()
        calls = []
        for host in hosts:
            calls.append(self.batch.call("ZCOUNT", f"{keys.tag(host)}:devices", now, "+inf"))
            calls.append(self.batch.call("HGET", f"{keys.tag(host)}:presence", "state"))
        replies = await asyncio.gather(*calls)
        return {
            host: (int(replies[2 * i]) > 0, text(replies[2 * i + 1]) or "available")
            for i, host in enumerate(hosts)
        }

    async def host_online(self, host: str) -> bool:
        count = await self.batch.call("ZCOUNT", f"{keys.tag(host)}:devices", now_ms(), "+inf")
        return int(count) > 0

    # -- guest leases: a guest whose process died is treated as dropped -------

    def lease_guests(self, guests: list[tuple[str, str, str]]) -> None:
        """Renew the leases of (host, guest, connection id) held by this process."""
        if not guests:
            return
        deadline = now_ms() + self.lease_ms
        args: list[Any] = []
        for host, guest, conn in guests:
            args += [deadline, f"{host}\n{guest}\n{conn}"]
        self.batch.fire("ZADD", keys.LEASES, *args)

    def drop_lease(self, host: str, guest: str, conn: str) -> None:
        """Rides with the next batch (``fire_later``): a drop that is late, or
        lost with the process, only lets the lease lapse, and a lapsed lease of
        a guest who left finds nobody."""
        self.batch.fire_later("ZREM", keys.LEASES, f"{host}\n{guest}\n{conn}")

    async def disconnect(self, host: str, guest: str, conn: str, window_ms: int) -> Step:
        """The guest's socket dropped: it turns away and keeps its place for
        ``window_ms``. Its expiry is queued ahead of the transition, in the same
        pipeline, so no crash or error between the two can leave it away for good
        (an early expiry entry is harmless: the expire guard checks the deadline)."""
        now = now_ms()  # the entry's score is exactly the deadline the script sets
        scheduled = self.batch.call("ZADD", keys.EXPIRY, now + window_ms, f"{host}\n{guest}")
        steps = self.transition(
            host,
            lobby.LobbyEvent.DISCONNECT,
            [(guest, b"")],
            conn=conn,
            window_ms=window_ms,
            now=now,
        )
        results = list(await asyncio.gather(scheduled, steps, return_exceptions=True))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        (step,) = cast(list[Step], results[1])
        return step

    async def sweep_leases(self, window_ms: int) -> int:
        """Turn away the guests whose holder stopped renewing (a crashed process);
        they can resume, or expire after the window as usual. An entry that fails
        comes back after ``CLAIM_RETRY_MS``; nothing is lost on an error."""
        claimed = await self._claim(keys.LEASES)
        done: list[tuple[str, str]] = []
        count = 0
        for member, claim in claimed:
            host, guest, conn = member.split("\n", 2)
            try:
                step = await self.disconnect(host, guest, conn, window_ms)
            except Exception as exc:  # kept claimed: it comes back after the claim
                log.warning("a lapsed lease failed (%s); it will be retried", type(exc).__name__)
                continue
            log.debug("lease of %s lapsed: %s %s", guest, step.verdict, step.state)
            count += step.ok
            done.append((member, claim))
        await self._done(keys.LEASES, done)
        return count

    # -- expiry -------------------------------------------------------------

    async def expire_due(self) -> int:
        """Expire every guest whose resume window has passed; returns how many."""
        return await self._apply_due(keys.EXPIRY, lobby.LobbyEvent.EXPIRE, "an expiry")

    async def time_out_due(self) -> int:
        """End the wait of every guest whose host's maximum wait has passed
        (``time_out``: the guard checks the guest's own ``wait_until``, which a
        hold clears); returns how many."""
        return await self._apply_due(keys.MAX_WAIT, lobby.LobbyEvent.TIME_OUT, "a maximum wait")

    async def _apply_due(self, schedule: str, event: lobby.LobbyEvent, what: str) -> int:
        """Apply ``event`` to every guest whose entry in ``schedule`` is due."""
        claimed = await self._claim(schedule)
        done: list[tuple[str, str]] = []
        count = 0
        for member, claim in claimed:
            host, _, guest = member.partition("\n")
            try:
                (step,) = await self.transition(host, event, [(guest, b"")])
            except Exception as exc:  # kept claimed: it comes back after the claim
                log.warning("%s failed (%s); it will be retried", what, type(exc).__name__)
                continue
            # not_due: dropped (or held) again since, and that re-scored the entry,
            # which ``done`` then leaves alone (it only removes entries still at the claim).
            count += step.ok
            done.append((member, claim))
        await self._done(schedule, done)
        return count

    # -- the email schedule ---------------------------------------------------

    def schedule_mail(self, host: str, at_ms: int) -> None:
        """At most one pending email per host: ``LT`` keeps the earliest, so a
        burst makes one email, and a knock during a send (whose claim lies
        further ahead than ``at_ms``) schedules the next one."""
        self.batch.fire("ZADD", keys.MAIL_DUE, "LT", at_ms, host)

    def reschedule_mail(self, host: str, at_ms: int) -> None:
        """Move a claimed entry to ``at_ms`` (later or earlier): ``done`` then
        leaves it, since it is no longer at its claim."""
        self.batch.fire("ZADD", keys.MAIL_DUE, at_ms, host)

    async def claim_mail(self, retry_ms: int, limit: int = 50) -> list[tuple[str, str]]:
        return await self._claim(keys.MAIL_DUE, limit, retry_ms)

    async def mail_done(self, claimed: list[tuple[str, str]]) -> None:
        await self._done(keys.MAIL_DUE, claimed)

    async def mail_cooldown_left(self, host: str) -> int:
        """Milliseconds until the host may be emailed again (0: now). The claim on
        the host's schedule entry makes this process the only one asking."""
        left = int(await self.batch.call("PTTL", f"{keys.tag(host)}:mailed"))
        return max(left, 0)

    async def start_mail_cooldown(self, host: str, cooldown_ms: int) -> None:
        """An email went out: no other for ``cooldown_ms``."""
        await self.batch.call("SET", f"{keys.tag(host)}:mailed", "1", "PX", max(cooldown_ms, 1))

    async def waiting(self, host: str) -> list[dict[str, Any]]:
        """Every guest still in the queue, oldest first."""
        return (await self.snapshot(host)).queue

    # -- single-use tokens -------------------------------------------------------

    async def use_once(self, nonce: str, ttl_ms: int) -> bool:
        """True the first time ``nonce`` is used (it is remembered ``ttl_ms``)."""
        return bool(await self.batch.call("SET", f"foyer:once:{nonce}", "1", "NX", "PX", ttl_ms))

    async def forget_once(self, nonce: str) -> None:
        await self.batch.call("DEL", f"foyer:once:{nonce}")

    # -- per-address limits (fixed one-minute windows) --------------------------

    @staticmethod
    def _window_key(bucket: str) -> str:
        return f"foyer:rl:{bucket}:{now_ms() // 60_000}"

    async def hit(self, bucket: str) -> int:
        """Count one hit of ``bucket`` in this minute; returns the count."""
        return int(await self.batch.script("hit", [self._window_key(bucket)], [61_000]))

    async def hits(self, bucket: str) -> int:
        """The hits of ``bucket`` in this minute so far."""
        return int(await self.batch.call("GET", self._window_key(bucket)) or 0)

    # -- schedules ------------------------------------------------------------

    async def _claim(
        self, key: str, limit: int = SWEEP_LIMIT, retry_ms: int = CLAIM_RETRY_MS
    ) -> list[tuple[str, str]]:
        reply = await self.batch.script("due", [key], [now_ms(), limit, retry_ms])
        return [(text(reply[i]), text(reply[i + 1])) for i in range(0, len(reply), 2)]

    async def _done(self, key: str, claimed: list[tuple[str, str]]) -> None:
        if claimed:
            await self.batch.script("done", [key], [x for pair in claimed for x in pair])
