"""What a knock, a resume, a reply and a drop mean, apart from any socket.

The endpoints hand every decoded frame here. The WaitingRoom applies the
rules that are not the store's (register a guest before its knock so no
event about it is missed, lease it in the same pipeline as the knock, roll
both back if the knock fails; build a reply's outcome once and store it with
the winning reply, so a guest that resumes late still gets it), drives the
store for what must be atomic, and hands the doorbell's events to the Hub.
After a pub/sub drop it recovers each host from one store snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from protocol import events, lobby
from protocol.errors import (
    AlreadyResolved,
    BadMessage,
    Locked,
    NotInMeeting,
    RateLimited,
    Unauthorized,
    UnknownGuest,
    UnknownLink,
)
from protocol.links import resolve_options, sanitise_options
from protocol.messages import (
    Admit,
    AdmitAll,
    Admitted,
    Busy,
    BusyNotice,
    Cancel,
    Denied,
    Deny,
    DenyAll,
    GuestHeld,
    GuestLeft,
    Held,
    Hello,
    Hold,
    JoinRequest,
    Knock,
    LobbyPage,
    Merge,
    Message,
    NewMeeting,
    Page,
    Presence,
    Resume,
    SendMessage,
    TimedOut,
    UpdateSettings,
    Waiting,
    Welcome,
)
from server import ids
from server.access.tokens import HostClaims, Tokens
from server.hosts.directory import Directory
from server.hosts.settings import HostSettings, lobby_settings, settings_view
from server.lobby.broker import Broker
from server.lobby.hub import GuestSession, HostSession, Hub, outcome_message, resolved_message
from server.meetings.planned import PlannedMeetings
from server.meetings.provider import PER_GUEST_OPTIONS, MeetingProvider
from server.metrics import Metrics
from server.notify.email import Mailer
from server.storage.store import KnockVerdict, Lobby, Snapshot, Store, raise_for
from server.storage.values import now_ms, pack
from server.tasks import cancel_and_wait

log = logging.getLogger("foyer.room")

RECOVERY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)  # then every 5 s until it succeeds
RECOVERY_LIMIT = 10_000  # hosts recovering at once


@dataclass(frozen=True, slots=True)
class RoomConfig:
    regions: list[str]
    resume_window_ms: int
    knock_limit: int  # per client address per link per minute (0 = off)
    link_knock_limit: int  # per link per minute (0 = off)
    resume_limit: int = 10  # failed resumes per client address per minute (0 = off)


def _resume_guest(secret: str) -> str:
    """The guest id a resume secret belongs to (``<guest>~<random>``)."""
    return secret.split("~", 1)[0]


class WaitingRoom:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        broker: Broker,
        hub: Hub,
        meetings: MeetingProvider,
        tokens: Tokens,
        host_settings: HostSettings,
        mailer: Mailer,
        config: RoomConfig,
        metrics: Metrics,
        *,
        planned: PlannedMeetings | None = None,
    ) -> None:
        self._metrics = metrics
        self._planned = planned  # dedicated meetings: a knock through /m/{id}
        self._store = store
        self._directory = directory
        self._broker = broker
        self._hub = hub
        self._meetings = meetings
        self._tokens = tokens
        self._host_settings = host_settings
        self._mailer = mailer
        self._config = config
        # Guests this process's devices of each host were told about, with their
        # options (a reply needs them to build the meeting: no extra read), or
        # None for guests a welcome only counted (the reply reads them).
        self._announced: dict[str, dict[str, dict[str, Any] | None]] = {}
        self._recoveries: dict[str, asyncio.Task[None]] = {}

    async def stop(self) -> None:
        await cancel_and_wait(self._recoveries.values())

    # -- guests -------------------------------------------------------------------

    async def enter(
        self, session: GuestSession, first: Knock | Resume, address: str, query: dict[str, str]
    ) -> None:
        """The guest's first frame. Follows the host's channel first (nothing
        published after that is missed); ``leave`` lets it go."""
        await self._broker.hold(session.host)
        session.holding = True
        if isinstance(first, Knock):
            await self._knock(session, first, address, query)
        else:
            await self._resume(session, first, address)

    async def _knock(
        self, session: GuestSession, knock: Knock, address: str, query: dict[str, str]
    ) -> None:
        host = session.host
        guest = "g" + ids.token_urlsafe(12)
        info, ignored = await self._guest_info(host, knock, query, guest)
        rules = await self._lobby_rules(host, info, address)
        resume = f"{guest}~{ids.token_urlsafe(24)}"
        session.guest = guest
        self._hub.add_guest(session)  # before the knock: no event about it can be missed
        # The lease goes out in the same pipeline as the knock, so a process that
        # dies right after the knock still leaves a lease that will lapse.
        self._store.lease_guests([(host, guest, session.conn_id)])
        try:
            result = await self._store.knock(
                host,
                guest,
                info,
                resume=resume,
                conn=session.conn_id,
                email=str(info.get("email") or ""),
                verified=bool(info["verified"]),
                link_limit=self._config.link_knock_limit,
                address=address,
                address_limit=self._config.knock_limit,
                rules=rules,
            )
        except BaseException:
            # The knock may have run though its answer was lost (Redis failed
            # mid-command): keep the lease, so that such a guest, whom no socket
            # holds, lapses and expires like any dropped guest instead of waiting
            # on the devices for good. If it did not run, the lapse finds nobody.
            self._hub.remove_guest(session)
            session.guest = ""
            raise
        self._metrics.knocked(result.verdict)
        if result.verdict is not KnockVerdict.OK:
            self._forget_guest(session)
            await self._refused(session, result.verdict, info)
            return
        record = await self._directory.record(host)
        notified = self._mailer.knocked(host, result.host_online, record)
        session.conn.send(
            Waiting(
                guest=guest,
                resume=resume,
                position=result.position,
                host_online=result.host_online,
                ignored=ignored or None,
                host_name=record["name"],
                host_notified=notified,
            )
        )
        session.set_place(result.score, result.position, result.score, result.host_online)
        self._hub.status_news(session)
        if result.raid_started and rules.raid_autolock:
            # The link locks itself (raid_autolock): a settings change like a
            # device's, so every device hears it; knocks after it are refused.
            # This guest is queued whatever happens here: a failure is logged.
            try:
                await self._host_settings.update(host, {"policy": {"locked": True}})
            except Exception as exc:
                log.warning("a raid could not lock its link (%s)", type(exc).__name__)

    async def _lobby_rules(self, host: str, info: dict[str, Any], address: str) -> Lobby:
        """The host's lobby settings as the knock script takes them. The deny
        cool-down's identity is the verified email, else the client address
        (a typed email proves nothing)."""
        record = await self._directory.record(host)
        rules = lobby_settings(record["settings"])
        email = str(info.get("email") or "")
        identity = f"v:{email.lower()}" if info["verified"] and email else f"a:{address}"
        max_wait_ms = int(rules["max_wait_s"]) * 1000
        line = str(rules["max_wait_message"] or "") or None
        return Lobby(
            identity=identity,
            deny_cooldown_ms=int(rules["deny_cooldown_s"]) * 1000,
            raid_threshold=int(rules["raid_threshold"]),
            raid_autolock=bool(rules["raid_autolock"]),
            max_wait_ms=max_wait_ms,
            timeout_outcome=TimedOut(message=line).to_map() if max_wait_ms else None,
        )

    async def _refused(
        self, session: GuestSession, verdict: KnockVerdict, info: dict[str, Any]
    ) -> None:
        match verdict:
            case KnockVerdict.BYPASS:
                record = await self._directory.record(session.host)
                meeting = self._meetings.personal(record["room"], info["options"])
                self._hub.finish(
                    session, Admitted(mode=lobby.LobbyEvent.ADMIT.value, meeting=meeting)
                )
            case KnockVerdict.BLOCKED | KnockVerdict.COOLING:
                self._hub.finish(session, Denied())  # quietly: no reason given
            case KnockVerdict.LOCKED:
                raise Locked()
            case KnockVerdict.RATE_LIMITED:
                raise RateLimited("this link gets too many knocks; try again in a minute")
            case _:
                raise UnknownLink()

    def _forget_guest(self, session: GuestSession) -> None:
        self._hub.remove_guest(session)
        self._store.drop_lease(session.host, session.guest, session.conn_id)
        session.guest = ""

    async def _guest_info(
        self, host: str, knock: Knock, query: dict[str, str], guest: str
    ) -> tuple[dict[str, Any], list[str]]:
        """The guest as hosts see it (PROTOCOL.md, Guest), and dropped options."""
        record = await self._directory.record(host)
        given: dict[str, Any] = {k: v for k, v in query.items() if k != "s"}
        given.update(knock.options or {})
        clean, ignored = sanitise_options(given, self._config.regions)
        session_id = knock.session or query.get("s")
        dedicated = None
        if session_id and self._planned is not None:  # a dedicated meeting's join link
            dedicated = await self._planned.knock_options(host, session_id)
            clean.update(dedicated or {})
        if session_id and dedicated is None:
            scheduled = await self._directory.session(host, session_id)
            if scheduled is None:
                ignored.append("session")
            else:
                clean["title"] = scheduled["title"]
                clean["duration"] = scheduled["duration"]
                clean["session"] = session_id
        defaults = record["settings"].get("meeting_defaults", {})
        options = resolve_options(clean, defaults, f"Meeting with {record['name']}")
        name, email, verified = knock.name, knock.email, False
        if knock.token:
            claims = self._tokens.guest(knock.token)
            verified = True
            name = claims.name or name
            email = claims.email or email
        info: dict[str, Any] = {
            "id": guest,
            "name": name,
            "verified": verified,
            "label": name if verified else f"{name} (Guest)",
            "knocked_at": now_ms(),
            "options": options,
        }
        if email:
            info["email"] = email
        return info, sorted(set(ignored))

    async def _resume(self, session: GuestSession, resume: Resume, address: str) -> None:
        host = session.host
        limit, bucket = self._config.resume_limit, f"resume:{address}"
        if limit and await self._store.hits(bucket) >= limit:
            raise RateLimited("too many failed resumes; try again in a minute")
        session.guest = _resume_guest(resume.resume)
        older = self._hub.guest(host, session.guest)
        self._hub.add_guest(session)
        self._store.lease_guests([(host, session.guest, session.conn_id)])
        try:
            (step,) = await self._store.transition(
                host,
                lobby.LobbyEvent.RESUME,
                [(session.guest, b"")],
                conn=session.conn_id,
                resume=resume.resume,
            )
        except BaseException:
            self._forget_guest(session)
            if older is not None:
                self._hub.add_guest(older)
            raise
        if older is not None:  # a half-open socket of this guest on this process
            self._hub.replaced(older)
        if step.ok:
            online = await self._store.host_online(host)
            record = await self._directory.record(host)
            session.conn.send(
                Waiting(
                    guest=session.guest,
                    resume=resume.resume,
                    position=step.position,
                    host_online=online,
                    host_name=record["name"],
                    host_notified=self._mailer.will_email(online, record),
                )
            )
            session.set_place(step.score, step.position, step.counter, online)
            self._hub.status_news(session)
            if step.held is not None:  # still on hold: show it again
                session.conn.send(Held.from_map(step.held))
        elif step.verdict is lobby.Verdict.ALREADY_RESOLVED and step.outcome is not None:
            self._store.drop_lease(host, session.guest, session.conn_id)
            self._hub.finish(session, outcome_message(step.outcome))
        else:
            self._forget_guest(session)
            if limit:
                await self._store.hit(bucket)  # a wrong or stale secret: count it
            raise UnknownGuest("this place in the waiting room is gone; knock again")

    async def handle_guest(self, session: GuestSession, message: Message) -> None:
        """A frame after the first one."""
        match message:
            case Cancel():
                await self._store.transition(
                    session.host, lobby.LobbyEvent.CANCEL, [(session.guest, b"")]
                )
            case _:
                raise BadMessage(f"'{message.TYPE}' is only valid as the first frame")

    async def leave(self, session: GuestSession) -> None:
        """The guest's socket is gone. A guest still waiting turns ``away`` and
        keeps its place for the resume window. If that fails (Redis down), its
        lease is kept: it lapses, and the lease sweep turns the guest away."""
        try:
            if session.guest:
                self._hub.remove_guest(session)
                if session.finished:
                    self._store.drop_lease(session.host, session.guest, session.conn_id)
                else:
                    await self._store.disconnect(
                        session.host,
                        session.guest,
                        session.conn_id,
                        self._config.resume_window_ms,
                    )
                    self._store.drop_lease(session.host, session.guest, session.conn_id)
        finally:
            if session.holding:
                session.holding = False
                self._broker.release(session.host)

    # -- host devices ------------------------------------------------------------------

    def authenticate(self, token: str) -> HostClaims:
        """The host a device's token (``hello``, ``refresh``) proves it belongs to."""
        return self._tokens.host(token)

    async def open_device(self, session: HostSession) -> None:
        """Follow the host, register the device, send the ``welcome`` (built from
        one snapshot of the store). ``close_device`` undoes all of it."""
        await self._broker.hold(session.host)
        try:
            await self._broker.hold(session.host, knocks=True)
        except BaseException:
            self._broker.release(session.host)
            raise
        session.holding = True
        self._hub.add_host(session)
        self._store.device_up(session.host, session.device)
        snapshot = await self._store.snapshot(session.host, limit=lobby.WELCOME_GUESTS)
        record = snapshot.record
        if record is None:
            raise Unauthorized("unknown host")
        self._directory.remember(record)
        announced = self._announced.setdefault(session.host, {})
        for gid in snapshot.ids:  # the device knows of every guest (it may page them)
            announced.setdefault(gid, None)
        announced.update((g["id"], g.get("options") or {}) for g in snapshot.queue)
        policy = record["settings"].get("policy", {})
        welcome = Welcome(
            host=session.host,
            state=snapshot.state,
            waiting=snapshot.queue,
            policy={k: policy.get(k) for k in ("locked", "bypass")},
            name=record["name"],
            meeting=snapshot.meeting,
            settings=settings_view(record["settings"]),
            waiting_total=len(snapshot.ids),
        )
        session.welcomed(welcome, snapshot.counter)

    async def close_device(self, session: HostSession) -> None:
        try:
            if self._hub.remove_host(session):
                self._announced.pop(session.host, None)
            if session.since is not None or session.holding:
                await self._store.device_down(session.host, session.device)
        finally:
            if session.holding:
                session.holding = False
                self._broker.release(session.host)
                self._broker.release(session.host, knocks=True)

    async def handle_host(self, host: str, message: Message, by: str = "") -> Message | None:
        """Apply one host frame (from a device, or the HTTP API); returns its
        answer if it has one (else the caller acks it); an error raises.
        ``by`` says who sent it ("device:<id>", "api", "email"): the
        ``guest.resolved`` webhook tells the integrator which one answered."""
        match message:
            case Page(after=after, limit=limit, ref=ref):
                size = min(limit or lobby.PAGE_GUESTS, lobby.PAGE_GUESTS)
                guests, more = await self._store.page(host, after, size)
                announced = self._announced.setdefault(host, {})
                announced.update((g["id"], g.get("options") or {}) for g in guests)
                return LobbyPage(guests=guests, more=more, ref=ref)
            case Hello():
                raise BadMessage("hello was already said")
            case Presence(state=state, meeting=meeting):
                await self._store.set_presence(host, state, meeting)
            case Admit(guest=guest):
                await self.reply(host, lobby.LobbyEvent.ADMIT, guest, by=by)
            case Merge(guest=guest):
                await self.reply(host, lobby.LobbyEvent.MERGE, guest, by=by)
            case NewMeeting(guest=guest, title=title):
                await self.reply(host, lobby.LobbyEvent.NEW_MEETING, guest, title=title, by=by)
            case Busy(guest=guest, message=text):
                await self.reply(host, lobby.LobbyEvent.BUSY, guest, message=text, by=by)
            case Deny(guest=guest, message=text, block=block):
                await self.reply(host, lobby.LobbyEvent.DENY, guest, message=text, by=by)
                if block:  # only once the deny has won
                    found = await self._store.guest_info(host, guest)
                    info = found[1] if found else {}
                    if info.get("email"):
                        await self._host_settings.block_email(
                            host, str(info["email"]), verified=info.get("verified") is True
                        )
            case SendMessage(guest=guest, text=text):
                await self._store.say(host, guest, text)
            case AdmitAll():
                await self.admit_all(host, by=by)
            case Hold(guest=guest, message=text, estimate_s=estimate):
                await self.hold(host, guest, text, estimate, by=by)
            case DenyAll(message=text):
                await self.deny_all(host, text, by=by)
            case UpdateSettings(settings=patch):
                await self._host_settings.update(host, patch)
            case _:
                raise BadMessage(f"'{message.TYPE}' is not a host frame")
        return None

    # -- replies -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _counted(self, event: lobby.LobbyEvent) -> Iterator[None]:
        """Count a reply's result: won, already_resolved or error."""
        try:
            yield
        except AlreadyResolved:
            self._metrics.replied(event.value, "already_resolved")
            raise
        except Exception:
            self._metrics.replied(event.value, "error")
            raise
        self._metrics.replied(event.value, "won")

    async def reply(
        self,
        host: str,
        event: lobby.LobbyEvent,
        guest: str,
        *,
        title: str | None = None,
        message: str | None = None,
        by: str = "",
    ) -> None:
        """Build the guest's outcome and apply the reply; exactly one wins."""
        with self._counted(event):
            await self._apply_reply(host, event, guest, title, message, by)

    async def _apply_reply(
        self,
        host: str,
        event: lobby.LobbyEvent,
        guest: str,
        title: str | None,
        message: str | None,
        by: str,
    ) -> None:
        options = self._announced.get(host, {}).get(guest)
        if options is None:  # not announced here: read it (the script checks the state)
            found = await self._store.guest_info(host, guest)
            if found is None:
                raise UnknownGuest()
            state, info = found
            if lobby.GuestState(state) not in lobby.QUEUED:
                raise AlreadyResolved()
            options = info.get("options") or {}
        outcome, merge_id = await self._outcome(host, event, options, title, message)
        (step,) = await self._store.transition(
            host, event, [(guest, pack(outcome.to_map()))], merge_id=merge_id, by=by
        )
        raise_for(step)

    async def _outcome(
        self,
        host: str,
        event: lobby.LobbyEvent,
        options: dict[str, Any],
        title: str | None,
        message: str | None,
    ) -> tuple[Message, str]:
        """The message the guest will get for ``event``, and the merge meeting id."""
        kind = lobby.OUTCOME_FOR_REPLY[event]
        if kind is lobby.Outcome.BUSY:
            return BusyNotice(message=message), ""
        if kind is lobby.Outcome.DENIED:
            return Denied(message=message), ""
        if event is lobby.LobbyEvent.MERGE:
            state, declared = await self._store.presence(host)
            if state != "in_meeting" or not declared:
                raise NotInMeeting()
            meeting = self._meetings.declared(declared, options)
            return Admitted(mode=event.value, meeting=meeting), str(declared["id"])
        if event is lobby.LobbyEvent.NEW_MEETING:
            opts = {**options, **({"title": title} if title else {})}
            record = await self._directory.record(host)
            meeting = self._meetings.instant(record["room"], record["settings"], opts)
            return Admitted(mode=event.value, meeting=meeting), ""
        record = await self._directory.record(host)
        return Admitted(
            mode=event.value, meeting=self._meetings.personal(record["room"], options)
        ), ""

    async def admit_all(self, host: str, by: str = "") -> int:
        """Admit every guest waiting now, oldest first, in atomic slices (see
        ``Store.transition_all``): the script puts each guest's own options into
        the personal room's meeting."""
        record = await self._directory.record(host)
        template = Admitted(
            mode=lobby.LobbyEvent.ADMIT.value, meeting=self._meetings.personal(record["room"], {})
        )
        return await self._store.transition_all(
            host, lobby.LobbyEvent.ADMIT, template.to_map(), PER_GUEST_OPTIONS, by
        )

    async def hold(
        self, host: str, guest: str, message: str | None, estimate_s: int | None, by: str = ""
    ) -> None:
        """Keep the guest in its place with the host's line and estimate (see
        ``protocol.lobby``: a queued-state attribute); it may be admitted later."""
        until = now_ms() + estimate_s * 1000 if estimate_s else None
        notice = Held(message=message, estimate_s=estimate_s, until=until)
        held = {k: v for k, v in notice.to_map().items() if k != "type"}
        with self._counted(lobby.LobbyEvent.HOLD):
            (step,) = await self._store.transition(
                host, lobby.LobbyEvent.HOLD, [(guest, pack(held))], by=by
            )
            raise_for(step)

    async def deny_all(self, host: str, message: str | None, by: str = "") -> int:
        """Deny every guest waiting now with one line, in the slices of
        ``admit_all``; each deny starts that guest's cool-down."""
        template = Denied(message=message)
        return await self._store.transition_all(
            host, lobby.LobbyEvent.DENY, template.to_map(), (), by
        )

    # -- the doorbell (the Broker's handler) --------------------------------------------

    def on_event(self, host: str, data: bytes) -> None:
        if not self._hub.has_devices(host) and events.kind_of(data) == events.Knocked.KIND:
            return  # a knock is news to devices only: a process of guests skips its decoding
        event = events.decode(data)
        match event:
            case events.Knocked(guest=info):
                if self._hub.has_devices(host):
                    announced = self._announced.setdefault(host, {})
                    announced[str(info["id"])] = info.get("options") or {}
            case events.Left(guest=gid) | events.Resolved(guest=gid) | events.Dismissed(guest=gid):
                self._announced.get(host, {}).pop(gid, None)
            case events.SettingsSet():
                self._directory.forget(host)
        self._hub.dispatch(host, event)

    def on_followed(self, host: str) -> None:
        self._directory.forget(host)  # we did not follow it: what we cached may be old

    def on_resubscribed(self, host: str) -> None:
        if host in self._recoveries or len(self._recoveries) >= RECOVERY_LIMIT:
            return
        task = asyncio.create_task(self._recover_until_done(host), name="foyer-recover")
        self._recoveries[host] = task
        task.add_done_callback(lambda _: self._recoveries.pop(host, None))

    async def _recover_until_done(self, host: str) -> None:
        attempt = 0
        self._metrics.recovery("started")
        while self._broker.holders(host) > 0:
            try:
                await self.recover(host)
                self._metrics.recovery("succeeded")
                return
            except Exception as exc:
                self._metrics.recovery("failed")
                log.warning("recovery of a host failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(RECOVERY_BACKOFF_S[min(attempt, len(RECOVERY_BACKOFF_S) - 1)])
            attempt += 1

    async def recover(self, host: str) -> None:
        """Tell local devices and guests of ``host`` what they missed while the
        subscription was down, from one snapshot (DESIGN: pub/sub is only the
        doorbell)."""
        announced = self._announced.get(host, {}) if self._hub.has_devices(host) else {}
        local = self._hub.local_guests(host)
        known = sorted(set(announced) | {s.guest for s in local if s.guest})
        snapshot = await self._store.snapshot(host, known)
        self._recover_devices(host, snapshot, announced)
        self._recover_guests(snapshot, local)

    def _recover_devices(
        self, host: str, snapshot: Snapshot, announced: dict[str, dict[str, Any] | None]
    ) -> None:
        if not self._hub.has_devices(host):
            return
        state = snapshot.state if snapshot.online else "away"
        queued = {g["id"] for g in snapshot.queue}
        for position, info in enumerate(snapshot.queue, start=1):
            if info["id"] not in announced:
                announced[info["id"]] = info.get("options") or {}
                message = JoinRequest(guest=info, position=position, host_state=state)
                self._hub.to_hosts(host, message)
            elif info.get("held"):  # a hold may have been missed: saying it again is harmless
                self._hub.to_hosts(host, GuestHeld(guest=info["id"], held=info["held"]))
        # Only the guests the snapshot was asked about: one announced while it was
        # in flight is newer than it, and still waiting.
        for gid in [g for g in announced if g not in queued and g in snapshot.known]:
            announced.pop(gid, None)
            known = snapshot.known.get(gid)
            outcome = known.outcome if known else None
            gone = known.state if known else lobby.GuestState.EXPIRED
            if outcome is not None and gone not in lobby.LEFT_REASON:  # a reply won
                action = lobby.reply_for_outcome(str(outcome.get("type")), outcome.get("mode"))
                self._hub.to_hosts(host, resolved_message(gid, action, outcome))
            else:
                reason = lobby.reason_for(gone)
                self._hub.to_hosts(host, GuestLeft(guest=gid, reason=reason))
        for session in self._hub.hosts.get(host, ()):
            if session.since is not None:
                session.since = max(session.since, snapshot.counter)

    def _recover_guests(self, snapshot: Snapshot, local: list[GuestSession]) -> None:
        ranks = {g["id"]: i for i, g in enumerate(snapshot.queue, start=1)}
        holds = {g["id"]: g["held"] for g in snapshot.queue if g.get("held")}
        for session in local:
            known = snapshot.known.get(session.guest)
            if session.finished or known is None or session.score is None:
                continue
            if session.guest in ranks:
                session.move_to(ranks[session.guest], snapshot.counter)
                if session.guest in holds:  # as for devices: a repeat is harmless
                    session.conn.send(Held.from_map(holds[session.guest]))
            elif known.state not in lobby.QUEUED:
                if known.outcome is not None:
                    self._hub.finish(session, outcome_message(known.outcome))
                else:
                    session.finished = True
                    self._hub.remove_guest(session)
                    session.conn.close()
