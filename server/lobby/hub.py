"""This process's sockets, per host and per guest, and fan-out to them.

The Hub never touches Redis (centrifuge's Hub: connections and broadcast
only). It turns a doorbell event into wire messages, encodes each message
once per subprotocol and hands the same frame to every device's bounded
queue, and keeps each socket's frames in the order PROTOCOL.md promises:
``welcome`` before any event for a device, ``waiting`` before anything else
for a guest.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field

from protocol import events, lobby
from protocol.codec import Frame
from protocol.errors import CloseCode
from protocol.messages import (
    TO_GUEST,
    GuestAway,
    GuestBack,
    GuestHeld,
    GuestLeft,
    Held,
    HostMessage,
    HostStatus,
    JoinRequest,
    Message,
    Position,
    PresenceChanged,
    RaidNotice,
    Resolved,
    SettingsChanged,
    Welcome,
    parse,
)
from server.hosts.settings import settings_view
from server.lobby.connection import Connection
from server.metrics import Metrics
from server.tasks import running_loop

log = logging.getLogger("foyer.hub")

HELD_LIMIT = 1024  # events held for a socket that is not placed yet
POSITION_SLICE = 200  # guests moved per loop pass in a position round


@dataclass(eq=False, slots=True)
class HostSession:
    host: str
    device: str
    conn: Connection
    since: int | None = None  # the welcome's event counter; None until welcomed
    holding: bool = False  # holds a reference on the host's channel and its knocks channel
    held: list[tuple[int, Frame]] = field(default_factory=list)  # events before the welcome

    def welcomed(self, welcome: Welcome, counter: int) -> None:
        """Send the welcome, then what arrived meanwhile and is not in it."""
        self.since = counter
        self.conn.send(welcome)
        held, self.held = self.held, []
        for ev, frame in held:
            if ev == 0 or ev > counter:
                self.conn.send_frame(frame)

    def deliver(self, ev: int, frame: Frame) -> None:
        if self.since is None:
            if len(self.held) >= HELD_LIMIT:
                self.conn.slow("held")
                return
            self.held.append((ev, frame))
        elif ev == 0 or ev > self.since:
            self.conn.send_frame(frame)


@dataclass(eq=False, slots=True)
class GuestSession:
    host: str
    conn: Connection
    conn_id: str
    guest: str = ""
    score: int | None = None  # the guest's place key in the queue
    since: int = 0  # event counter when ``position`` was last computed
    position: int = 0
    pending: list[tuple[int, int]] = field(default_factory=list)  # (event, removed score)
    held: list[Message] = field(default_factory=list)  # messages due after ``waiting``
    close_when_placed: bool = False
    finished: bool = False
    holding: bool = False  # holds a reference on the host's channel
    told: tuple[bool, str] | None = None  # the host's (online, state) as last sent

    def set_place(self, score: int, position: int, since: int, host_online: bool) -> None:
        """Called right after ``waiting`` went out: now send what arrived
        before it (PROTOCOL: ``waiting`` comes first), in order."""
        self.score, self.position, self.since = score, position, since
        self.told = (host_online, "available")  # a page takes an online host as available
        pending, self.pending = self.pending, []
        self.departed(sorted(pending, key=lambda d: d[1]))
        held, self.held = self.held, []
        for message in held:
            self.conn.send(message)
        if self.close_when_placed:
            self.conn.close(CloseCode.NORMAL)

    def deliver(self, message: Message, *, close: bool = False) -> None:
        """Send now, or hold until the guest has its ``waiting``."""
        if self.score is None:
            if len(self.held) < HELD_LIMIT:
                self.held.append(message)
            self.close_when_placed = self.close_when_placed or close
            return
        self.conn.send(message)
        if close:
            self.conn.close(CloseCode.NORMAL)

    def departed(
        self,
        departures: list[tuple[int, int]],
        scores: list[int] | None = None,
        events: tuple[int, int] | None = None,
    ) -> None:
        """Guests left the queue: (event, score) pairs sorted by score. Move up by
        the number that were ahead and left after our place was computed, with at
        most one ``position`` frame (PROTOCOL: position). A round passes the
        scores and the (lowest, highest) event once for all its guests: each
        guest then costs O(log departures), not O(departures)."""
        if not departures:
            return
        if self.score is None:
            room = HELD_LIMIT - len(self.pending)
            self.pending.extend(departures[:room])
            return
        if events is None:
            events = (min(ev for ev, _ in departures), max(ev for ev, _ in departures))
        if self.since < events[0]:  # all are news: count by score
            ahead = bisect_left(scores or [s for _, s in departures], self.score)
        else:
            ahead = sum(1 for ev, s in departures if ev > self.since and s < self.score)
        self.since = max(self.since, events[1])
        moved = max(1, self.position - ahead)
        if moved != self.position:
            self.position = moved
            self.conn.send(Position(position=moved))

    def tell_status(self, status: tuple[bool, str]) -> None:
        """The host's (online, state), if it is news to this guest (addition
        ``host_status``); nothing before ``waiting``, which carries its own."""
        if self.score is None or self.finished or status == self.told:
            return
        self.told = status
        self.conn.send(HostStatus(online=status[0], state=status[1]))

    def move_to(self, position: int, counter: int) -> None:
        """The store says the guest's place is ``position`` as of ``counter``."""
        if position != self.position:
            self.position = position
            self.conn.send(Position(position=position))
        self.since = max(self.since, counter)


def outcome_message(outcome: dict[str, object]) -> Message:
    """The stored outcome of a reply as the guest's typed message."""
    return parse(outcome, TO_GUEST)


class Hub:
    def __init__(self, metrics: Metrics, position_interval: float = 1.0) -> None:
        self._metrics = metrics
        self.hosts: dict[str, set[HostSession]] = defaultdict(set)
        self.guests: dict[str, dict[str, GuestSession]] = defaultdict(dict)
        self.position_interval = position_interval
        self._departures: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._position_rounds: dict[str, asyncio.TimerHandle] = {}
        self._last_round: dict[str, float] = {}
        self._status: dict[str, tuple[bool, str]] = {}  # each host's, as last read

    # -- local sessions ------------------------------------------------------------

    def add_host(self, session: HostSession) -> None:
        self.hosts[session.host].add(session)

    def remove_host(self, session: HostSession) -> bool:
        """Forget a device; True if it was the host's last one here."""
        devices = self.hosts.get(session.host)
        if devices is None or session not in devices:
            return False
        devices.discard(session)
        if devices:
            return False
        del self.hosts[session.host]
        return True

    def has_devices(self, host: str) -> bool:
        return bool(self.hosts.get(host))

    def guest(self, host: str, guest: str) -> GuestSession | None:
        return self.guests.get(host, {}).get(guest)

    def local_guests(self, host: str) -> list[GuestSession]:
        return list(self.guests.get(host, {}).values())

    def add_guest(self, session: GuestSession) -> None:
        local = self.guests[session.host]
        if session.guest not in local:
            self._metrics.guests_waiting.inc()
        local[session.guest] = session

    def remove_guest(self, session: GuestSession) -> None:
        local = self.guests.get(session.host)
        if local is not None and local.get(session.guest) is session:
            del local[session.guest]
            self._metrics.guests_waiting.dec()
            if not local:
                del self.guests[session.host]

    def replaced(self, session: GuestSession) -> None:
        """A newer connection resumed this guest: close the older one (4409)."""
        session.finished = True
        self.remove_guest(session)
        session.conn.close(CloseCode.REPLACED)

    def finish(self, session: GuestSession, outcome: Message) -> None:
        """The guest's wait is over: send the outcome, then close with 1000."""
        session.finished = True
        self.remove_guest(session)
        session.conn.send(outcome)
        session.conn.close(CloseCode.NORMAL)

    # -- events -> frames ------------------------------------------------------------

    def dispatch(self, host: str, event: events.Event) -> None:
        match event:
            case events.Knocked(ev=ev, position=position, host_state=state, guest=info):
                message = JoinRequest(guest=info, position=position, host_state=state)
                if self.to_hosts(host, message, ev):
                    self._metrics.delivered(info.get("knocked_at"))
            case events.Left(ev=ev, guest=gid, score=score, reason=reason):
                self.to_hosts(host, GuestLeft(guest=gid, reason=reason), ev)
                self.guest_gone(host, gid, ev, score, None)
            case events.Resolved(ev=ev, guest=gid, score=score, action=action, outcome=outcome):
                if self.has_devices(host):  # a process of guests only builds no device frame
                    self.to_hosts(host, resolved_message(gid, action, outcome), ev)
                self.guest_gone(host, gid, ev, score, outcome_message(outcome))
            case events.Dismissed(ev=ev, guest=gid, score=score, reason=reason, outcome=outcome):
                self.to_hosts(host, GuestLeft(guest=gid, reason=reason), ev)
                self.guest_gone(host, gid, ev, score, outcome_message(outcome))
            case events.HeldSet(guest=gid, held=held):
                self.to_hosts(host, GuestHeld(guest=gid, held=held))
                session = self.guest(host, gid)
                if session is not None:
                    session.deliver(Held.from_map(held))
            case events.Raid(count=count, until=until, autolock=autolock):
                window_s = lobby.RAID_WINDOW_MS // 1000
                notice = RaidNotice(count=count, window_s=window_s, until=until, autolock=autolock)
                self.to_hosts(host, notice)
            case events.Said(guest=gid, text=text):
                session = self.guest(host, gid)
                if session is not None:
                    session.deliver(HostMessage(text=text))
            case events.Resumed(guest=gid, conn=conn_id):
                self.to_hosts(host, GuestBack(guest=gid))
                session = self.guest(host, gid)
                if session is not None and session.conn_id != conn_id:
                    self.replaced(session)
            case events.WentAway(guest=gid):
                self.to_hosts(host, GuestAway(guest=gid))
            case events.PresenceSet(state=state, meeting=meeting):
                self.to_hosts(host, PresenceChanged(state=state, meeting=meeting))
                known = self._status.get(host)
                if known is not None:  # guests hear it now; online-ness comes with the reads
                    self.host_status(host, known[0], state)
            case events.SettingsSet(settings=settings):
                self.to_hosts(host, SettingsChanged(settings=settings_view(settings)))

    def to_hosts(self, host: str, message: Message, ev: int = 0) -> bool:
        """Every device of ``host`` here gets ``message``, encoded once per codec;
        False if it has none here."""
        devices = self.hosts.get(host)
        if not devices:
            return False
        body = message.to_map()
        frames: dict[str, Frame] = {}
        for session in devices:
            codec = session.conn.codec
            frame = frames.get(codec.name)
            if frame is None:
                frame = frames[codec.name] = codec.encode(body)
            session.deliver(ev, frame)
        return True

    def guest_gone(self, host: str, gid: str, ev: int, score: int, outcome: Message | None) -> None:
        """``gid`` left the queue: tell it (if it is here), move the others up."""
        local = self.guests.get(host)
        if not local:
            return
        leaving = local.get(gid)
        if leaving is not None:
            leaving.finished = True
            self.remove_guest(leaving)
            if outcome is not None:
                leaving.deliver(outcome, close=True)
            elif leaving.score is None:
                leaving.close_when_placed = True
            else:
                leaving.conn.close(CloseCode.NORMAL)
        self._departures[host].append((ev, score))
        self._schedule_positions(host)

    def _schedule_positions(self, host: str) -> None:
        """Coalesce departures: the first after a quiet spell moves everyone at
        once, then at most one round per ``position_interval`` (a drain of N
        guests costs O(N) per round, not O(N) per departure); the last round
        leaves every place exact."""
        if host in self._position_rounds:
            return
        loop = running_loop()
        wait = max(0.0, self._last_round.get(host, 0.0) + self.position_interval - loop.time())
        self._position_rounds[host] = loop.call_later(wait, self._position_round, host)

    def _position_round(self, host: str) -> None:
        self._position_rounds.pop(host, None)
        loop = running_loop()
        self._last_round[host] = loop.time()
        departures = sorted(self._departures.pop(host, ()), key=lambda d: d[1])
        if not departures:
            return
        scores = [s for _, s in departures]
        events = (min(ev for ev, _ in departures), max(ev for ev, _ in departures))
        sessions = list(self.guests.get(host, {}).values())
        self._position_slice(departures, scores, events, sessions, 0)
        if len(self._last_round) > 10_000:  # only recent rounds matter
            self._last_round.clear()

    def _position_slice(
        self,
        departures: list[tuple[int, int]],
        scores: list[int],
        events: tuple[int, int],
        sessions: list[GuestSession],
        start: int,
    ) -> None:
        """One slice of a round: ``POSITION_SLICE`` guests, then the rest on the
        next loop passes, so a host with thousands waiting never holds the loop
        for the whole round (each frame is also a write at the end of the pass)."""
        end = min(len(sessions), start + POSITION_SLICE)
        for session in sessions[start:end]:
            if not session.finished:
                session.departed(departures, scores, events)
        if end < len(sessions):
            loop = running_loop()
            loop.call_soon(self._position_slice, departures, scores, events, sessions, end)

    def host_status(self, host: str, online: bool, state: str) -> None:
        """The host's (online, state) as read from the store: when it changed,
        each local guest who was told otherwise hears it, ``POSITION_SLICE``
        guests per loop pass (a host with thousands waiting holds no pass)."""
        status = (online, state)
        if self._status.get(host) == status:
            return
        self._status[host] = status
        self._status_slice(status, list(self.guests.get(host, {}).values()), 0)

    def status_news(self, session: GuestSession) -> None:
        """Right after ``waiting``: the host's status as last read, if it differs
        from what ``waiting`` said (a guest placed after the read would not hear it
        until the status changed again)."""
        known = self._status.get(session.host)
        # Where they disagree on online-ness, ``waiting`` is the fresher: the next
        # read settles it. The state, ``waiting`` does not carry.
        if known is not None and session.told is not None and known[0] == session.told[0]:
            session.tell_status(known)

    def _status_slice(
        self, status: tuple[bool, str], sessions: list[GuestSession], start: int
    ) -> None:
        end = min(len(sessions), start + POSITION_SLICE)
        for session in sessions[start:end]:
            session.tell_status(status)
        if end < len(sessions):
            running_loop().call_soon(self._status_slice, status, sessions, end)

    def forget_status(self, keep: set[str]) -> None:
        """Drop what was read of hosts with no guest here any more."""
        for host in [h for h in self._status if h not in keep]:
            del self._status[host]

    def stop(self) -> None:
        for handle in self._position_rounds.values():
            handle.cancel()
        self._position_rounds.clear()


def resolved_message(guest: str, action: str, outcome: dict[str, object]) -> Resolved:
    """What every device hears when a reply won (with the meeting, if any)."""
    meeting = outcome.get("meeting")
    return Resolved(
        guest=guest, action=action, meeting=meeting if isinstance(meeting, dict) else None
    )
