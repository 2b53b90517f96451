"""The local side of fan-out: this process's host devices and guests, and the
one task that reads pub/sub for all of them.

An event published by a Lua script reaches the Hub of every process that
holds a socket of that host; the Hub encodes each outgoing message once per
subprotocol and hands the same frame to every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from redis.asyncio.client import PubSub

from protocol.codec import Frame
from protocol.errors import CloseCode
from server.lobby.connection import Connection
from server.storage.store import Store

log = logging.getLogger("foyer.hub")

UNSUBSCRIBE_AFTER_S = 30.0


@dataclass(eq=False, slots=True)
class HostSession:
    host: str
    device: str
    conn: Connection
    skip: set[str] = field(default_factory=set)  # guests already in the welcome


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
    held: list[dict[str, Any]] = field(default_factory=list)  # frames due after ``waiting``
    close_when_placed: bool = False
    finished: bool = False

    def set_place(self, score: int, position: int, since: int) -> None:
        """Called right after ``waiting`` went out: now send what arrived
        before it (PROTOCOL: ``waiting`` comes first), in order."""
        self.score, self.position, self.since = score, position, since
        pending, self.pending = self.pending, []
        for ev, removed in pending:
            self.removed(ev, removed)
        held, self.held = self.held, []
        for frame in held:
            self.conn.send(frame)
        if self.close_when_placed:
            self.conn.close(CloseCode.NORMAL)

    def deliver(self, frame: dict[str, Any], *, close: bool = False) -> None:
        """Send now, or hold until the guest has its ``waiting``."""
        if self.score is None:
            self.held.append(frame)
            self.close_when_placed = self.close_when_placed or close
            return
        self.conn.send(frame)
        if close:
            self.conn.close(CloseCode.NORMAL)

    def removed(self, ev: int, removed_score: int) -> None:
        """Someone left the queue: move up if they were ahead (PROTOCOL: position)."""
        if self.score is None:
            if len(self.pending) < 1024:
                self.pending.append((ev, removed_score))
            return
        if ev > self.since and removed_score < self.score and self.position > 1:
            self.position -= 1
            self.since = ev
            self.conn.send({"type": "position", "position": self.position})


class Hub:
    def __init__(self, store: Store, *, sharded: bool = False) -> None:
        self._redis = store.redis
        self._store = store
        self._channel_of = store.channel
        self._sharded = sharded
        # Guests this process's devices of each host have been told about, with
        # their options (a reply needs them to build the meeting: no extra read).
        self.announced: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._resyncs: set[asyncio.Task[None]] = set()
        # Told when a host's cached record may be stale (see WaitingRoom).
        self.on_host_change: Callable[[str], None] = lambda host: None
        self.hosts: dict[str, set[HostSession]] = defaultdict(set)
        self.guests: dict[str, dict[str, GuestSession]] = defaultdict(dict)
        self._refs: dict[str, int] = defaultdict(int)
        self._host_of: dict[str, str] = {}
        self._idle_since: dict[str, float] = {}
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._subscribed: set[str] = set()
        self._pubsub: PubSub | None = None
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._shard_tasks: set[str] = set()
        self.resyncs = 0

    # -- lifecycle (the Node owns these tasks) ---------------------------------

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        self._tasks = [asyncio.create_task(self._gc_loop(), name="foyer-unsubscribe")]
        if not self._sharded:
            self._tasks.append(asyncio.create_task(self._read_loop(), name="foyer-pubsub"))

    async def stop(self) -> None:
        for task in [*self._tasks, *self._resyncs]:
            task.cancel()
        for task in [*self._tasks, *self._resyncs]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    def sessions(self) -> Iterable[HostSession | GuestSession]:
        for devices in self.hosts.values():
            yield from devices
        for guests in self.guests.values():
            yield from guests.values()

    # -- subscriptions -----------------------------------------------------------

    async def _hold(self, host: str) -> None:
        channel = self._channel_of(host)
        self._refs[channel] += 1
        self._idle_since.pop(channel, None)
        if channel in self._subscribed:
            return
        fut = self._confirm.get(channel)
        if fut is None:
            fut = self._confirm[channel] = asyncio.get_running_loop().create_future()
            self._host_of[channel] = host
            self.on_host_change(host)  # we did not follow it: what we cached may be old
            assert self._pubsub is not None
            if self._sharded:
                await self._pubsub.ssubscribe(channel)
                self._shard_readers()
            else:
                await self._pubsub.subscribe(channel)
            self._ready.set()
        # Wait for Redis to confirm, so nothing published after this is missed.
        await asyncio.wait_for(asyncio.shield(fut), timeout=5.0)

    def _release(self, host: str) -> None:
        channel = self._channel_of(host)
        self._refs[channel] -= 1
        if self._refs[channel] <= 0:
            self._refs.pop(channel, None)
            self._idle_since[channel] = time.monotonic()

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(UNSUBSCRIBE_AFTER_S / 3)
            try:
                cutoff = time.monotonic() - UNSUBSCRIBE_AFTER_S
                idle = [c for c, t in self._idle_since.items() if t < cutoff]
                for channel in idle:
                    self._idle_since.pop(channel, None)
                    self._subscribed.discard(channel)
                    self._host_of.pop(channel, None)
                    assert self._pubsub is not None
                    if self._sharded:
                        await self._pubsub.sunsubscribe(channel)
                    else:
                        await self._pubsub.unsubscribe(channel)
            except Exception:
                log.exception("unsubscribe sweep failed")

    # -- local sessions ------------------------------------------------------------

    async def add_host(self, session: HostSession) -> None:
        await self._hold(session.host)
        self.hosts[session.host].add(session)

    def welcomed(self, session: HostSession, guests: list[dict[str, Any]]) -> None:
        """The device's welcome listed these guests."""
        session.skip = {g["id"] for g in guests}
        self.announced[session.host].update((g["id"], g.get("options") or {}) for g in guests)

    def guest_options(self, host: str, guest: str) -> dict[str, Any] | None:
        """The options of a guest this process announced, if it did."""
        return self.announced.get(host, {}).get(guest)

    def remove_host(self, session: HostSession) -> None:
        devices = self.hosts.get(session.host)
        if devices is not None and session in devices:
            devices.discard(session)
            if not devices:
                del self.hosts[session.host]
                self.announced.pop(session.host, None)
            self._release(session.host)

    async def watch_host(self, host: str) -> None:
        """Subscribe for a guest before it knocks (the guest is added after)."""
        await self._hold(host)

    def unwatch_host(self, host: str) -> None:
        self._release(host)

    def add_guest(self, session: GuestSession) -> None:
        self.guests[session.host][session.guest] = session

    def remove_guest(self, session: GuestSession) -> None:
        local = self.guests.get(session.host)
        if local is not None and local.get(session.guest) is session:
            del local[session.guest]
            if not local:
                del self.guests[session.host]

    def replaced(self, session: GuestSession) -> None:
        """A newer connection resumed this guest: close the older one."""
        session.finished = True
        self.remove_guest(session)
        session.conn.close(CloseCode.REPLACED)

    # -- the pub/sub reader ----------------------------------------------------------

    def _shard_readers(self) -> None:
        """On a Cluster, one reader per shard node: the cluster client's own
        round-robin read would make a message on one node wait for another
        node's read timeout."""
        assert self._pubsub is not None
        for name in list(getattr(self._pubsub, "node_pubsub_mapping", {})):
            if name not in self._shard_tasks:
                node = self._redis.get_node(node_name=name)  # type: ignore[attr-defined]
                self._shard_tasks.add(name)
                self._tasks.append(
                    asyncio.create_task(self._read_loop(node), name=f"foyer-pubsub-{name}")
                )

    async def _read_loop(self, node: Any = None) -> None:
        await self._ready.wait()
        assert self._pubsub is not None
        pubsub = self._pubsub
        while True:
            try:
                if node is not None:
                    message = await pubsub.get_sharded_message(  # type: ignore[attr-defined]
                        timeout=1.0, target_node=node
                    )
                else:
                    message = await pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("pub/sub read failed; reconnecting")
                self.resyncs += 1
                await asyncio.sleep(0.2)
                continue
            if message is None:
                continue
            try:
                self._on_message(message)
            except Exception:
                log.exception("bad event on pub/sub")

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        if kind in ("subscribe", "ssubscribe"):
            if channel in self._subscribed and channel in self._host_of:
                self._resync_later(self._host_of[channel])  # re-subscribed after a drop
            self._subscribed.add(channel)
            fut = self._confirm.pop(channel, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        if kind not in ("message", "smessage"):
            return
        host = self._host_of.get(channel)
        if host is not None:
            self.dispatch(host, message["data"])

    # -- resync: the store is the truth when pub/sub missed something -------------

    def _resync_later(self, host: str) -> None:
        if len(self._resyncs) > 10_000:
            return
        self.resyncs += 1
        task = asyncio.create_task(self._resync(host))
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def _resync(self, host: str) -> None:
        """Tell local devices and guests of ``host`` what they missed while the
        subscription was down, by reading the store (DESIGN: pub/sub is only
        the doorbell)."""
        try:
            store = self._store
            waiting = await store.waiting(host)
            counter = await store.event_counter(host)
            if host in self.hosts:
                state, _ = await store.presence(host)
                online = await store.host_online(host)
                announced = self.announced[host]
                ids = {g["id"] for g in waiting}
                for position, info in enumerate(waiting, start=1):
                    if info["id"] not in announced:
                        announced[info["id"]] = info.get("options") or {}
                        self._to_hosts(
                            host,
                            {
                                "type": "join_request",
                                "guest": info,
                                "position": position,
                                "host_state": state if online else "away",
                            },
                        )
                for gid in [g for g in announced if g not in ids]:
                    announced.pop(gid, None)
                    found = await store.guest_outcome(host, gid)
                    self._to_hosts(host, _missed_for_hosts(gid, *found))
            for session in list(self.guests.get(host, {}).values()):
                state, outcome = await store.guest_outcome(host, session.guest)
                if state in ("waiting", "away"):
                    ranks = [g["id"] for g in waiting]
                    if session.guest in ranks:
                        position = ranks.index(session.guest) + 1
                        if position != session.position:
                            session.position = position
                            session.conn.send({"type": "position", "position": position})
                        session.since = max(session.since, counter)
                elif not session.finished:
                    session.finished = True
                    self.remove_guest(session)
                    if outcome is not None:
                        session.conn.send(outcome)
                    session.conn.close(CloseCode.NORMAL)
        except Exception:
            log.warning("resync of a host failed", exc_info=True)

    # -- events -> frames ------------------------------------------------------------

    def dispatch(self, host: str, data: bytes) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(data)
        parts = list(unpacker)
        kind, ev = parts[0], parts[1]
        if kind == "knock":
            _, _, position, state, info = parts
            if host in self.hosts:
                self.announced[host][info["id"]] = info.get("options") or {}
            self._to_hosts(
                host,
                {"type": "join_request", "guest": info, "position": position, "host_state": state},
                skip_guest=info.get("id"),
            )
        elif kind == "left":
            _, _, gid, score, reason = parts
            self._to_hosts(host, {"type": "guest_left", "guest": gid, "reason": reason})
            self._guest_gone(host, gid, ev, score, None)
        elif kind == "resolved":
            _, _, gid, score, action, outcome = parts
            self._to_hosts(
                host,
                {
                    "type": "resolved",
                    "guest": gid,
                    "action": action,
                    **({"meeting": outcome["meeting"]} if outcome.get("meeting") else {}),
                },
            )
            self._guest_gone(host, gid, ev, score, outcome)
        elif kind == "message":
            _, _, gid, text = parts
            session = self.guests.get(host, {}).get(gid)
            if session is not None:
                session.deliver({"type": "message", "text": text})
        elif kind == "resumed":
            _, _, gid, conn_id = parts
            self._to_hosts(host, {"type": "guest_back", "guest": gid})
            session = self.guests.get(host, {}).get(gid)
            if session is not None and session.conn_id != conn_id:
                self.replaced(session)
        elif kind == "away":
            self._to_hosts(host, {"type": "guest_away", "guest": parts[2]})
        elif kind == "presence":
            _, _, state, meeting = parts
            self._to_hosts(host, {"type": "presence", "state": state, "meeting": meeting or None})
        elif kind == "settings":
            self.on_host_change(host)
            self._to_hosts(host, {"type": "settings", "settings": parts[2]})

    def _to_hosts(self, host: str, body: dict[str, Any], skip_guest: str | None = None) -> None:
        devices = self.hosts.get(host)
        if not devices:
            return
        frames: dict[str, Frame] = {}
        for session in devices:
            if skip_guest is not None and skip_guest in session.skip:
                session.skip.discard(skip_guest)
                continue
            codec = session.conn.codec
            frame = frames.get(codec.name)
            if frame is None:
                frame = frames[codec.name] = codec.encode(body)
            session.conn.send_frame(frame)

    def _guest_gone(
        self, host: str, gid: str, ev: int, score: int, outcome: dict[str, Any] | None
    ) -> None:
        announced = self.announced.get(host)
        if announced is not None:
            announced.pop(gid, None)
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
        for session in list(local.values()):
            session.removed(ev, score)


def _missed_for_hosts(guest: str, state: str, outcome: dict[str, Any] | None) -> dict[str, Any]:
    """What hosts would have heard about a guest who left the queue unseen."""
    if outcome is not None:
        kind = outcome.get("type")
        action = (
            outcome.get("mode") if kind == "admitted" else ("busy" if kind == "busy" else "deny")
        )
        body: dict[str, Any] = {"type": "resolved", "guest": guest, "action": action}
        if outcome.get("meeting"):
            body["meeting"] = outcome["meeting"]
        return body
    reason = "cancelled" if state == "cancelled" else "expired"
    return {"type": "guest_left", "guest": guest, "reason": reason}
