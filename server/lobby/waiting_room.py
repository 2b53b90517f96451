"""What a knock, a resume and a host reply do, apart from any socket.

The endpoints call these; the store makes each step atomic; the outcome a
guest receives is built here once and stored with the winning reply, so a
guest that resumes late still gets it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from protocol import lobby
from protocol.errors import (
    AlreadyResolved,
    BadMessage,
    Locked,
    NotInMeeting,
    RateLimited,
    UnknownGuest,
    UnknownLink,
)
from protocol.links import resolve_options, sanitise_options
from protocol.messages import Knock
from server.storage.store import Step, now_ms, pack

if TYPE_CHECKING:
    from server.node import Node

# A slug never moves to another host (old slugs stay reserved to theirs), and a
# cached host record is dropped whenever this process starts to follow the host's
# channel and on every settings event on it; policy is enforced by the knock
# script itself. So a long life is safe.
SLUG_CACHE_S = 60.0
HOST_CACHE_S = 60.0
DENIED_QUIETLY: dict[str, Any] = {"type": "denied"}
V = TypeVar("V")


class TtlCache(Generic[V]):
    """A small cache whose entries live ``ttl`` seconds; bounded (cleared when full)."""

    def __init__(self, ttl: float, limit: int = 50_000) -> None:
        self.ttl, self.limit = ttl, limit
        self._items: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: str, value: V) -> None:
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)


@dataclass(slots=True)
class KnockOutcome:
    """``waiting`` (queued) or a final guest message (bypass, blocked)."""

    message: dict[str, Any]
    queued: bool
    score: int = 0
    position: int = 0


class WaitingRoom:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._hosts: TtlCache[dict[str, Any]] = TtlCache(HOST_CACHE_S)
        self._slugs: TtlCache[str] = TtlCache(SLUG_CACHE_S)

    # -- cached lookups (a knock must not cost extra round trips) ---------------

    async def host_for_slug(self, slug: str) -> str:
        host = self._slugs.get(slug)
        if host is None:
            host = await self.node.store.host_for_slug(slug)
            if host is None:
                raise UnknownLink()
            self._slugs.put(slug, host)
        return host

    async def host_record(self, host: str) -> dict[str, Any]:
        record = self._hosts.get(host)
        if record is None:
            record = await self.node.store.get_host(host)
            if record is None:
                raise UnknownLink()
            self._hosts.put(host, record)
        return record

    def forget_host(self, host: str) -> None:
        self._hosts.drop(host)

    # -- guests ---------------------------------------------------------------------

    async def guest_info(
        self, host: str, knock: Knock, query: dict[str, str], guest_id: str
    ) -> tuple[dict[str, Any], list[str]]:
        """The guest as hosts see it (PROTOCOL.md, Guest), and dropped options."""
        record = await self.host_record(host)
        given = {k: v for k, v in query.items() if k != "s"}
        given.update(knock.options or {})
        clean, ignored = sanitise_options(given, self.node.settings.region_list)
        session_id = knock.session or query.get("s")
        if session_id:
            session = await self.node.store.get_session(host, session_id)
            if session is None:
                ignored.append("session")
            else:
                clean["title"] = session["title"]
                clean["duration"] = session["duration"]
                clean["session"] = session_id
        defaults = record["settings"].get("meeting_defaults", {})
        options = resolve_options(clean, defaults, f"Meeting with {record['name']}")
        name, email, verified = knock.name, knock.email, False
        if knock.token:
            claims = self.node.tokens.guest(knock.token)
            verified = True
            name = claims.name or name
            email = claims.email or email
        info: dict[str, Any] = {
            "id": guest_id,
            "name": name,
            "verified": verified,
            "label": name if verified else f"{name} (Guest)",
            "knocked_at": now_ms(),
            "options": options,
        }
        if email:
            info["email"] = email
        return info, sorted(set(ignored))

    async def knock(
        self, host: str, info: dict[str, Any], ignored: list[str], conn_id: str
    ) -> KnockOutcome:
        guest_id = info["id"]
        resume = f"{guest_id}~{secrets.token_urlsafe(24)}"
        record = await self.host_record(host)
        result = await self.node.store.knock(
            host,
            guest_id,
            info,
            resume=resume,
            conn=conn_id,
            email=str(info.get("email") or ""),
            verified=bool(info["verified"]),
            link_limit=self.node.settings.link_knock_limit,
        )
        if result.outcome == "ok":
            waiting: dict[str, Any] = {
                "type": "waiting",
                "guest": guest_id,
                "resume": resume,
                "position": result.position,
                "host_online": result.host_online,
                "host_name": record["name"],
            }
            if ignored:
                waiting["ignored"] = ignored
            return KnockOutcome(waiting, True, result.score, result.position)
        if result.outcome == "bypass":
            meeting = self.node.meetings.personal(record["room"], info["options"])
            return KnockOutcome({"type": "admitted", "mode": "admit", "meeting": meeting}, False)
        if result.outcome == "blocked":
            return KnockOutcome(DENIED_QUIETLY, False)
        if result.outcome == "locked":
            raise Locked()
        if result.outcome == "rate_limited":
            raise RateLimited("this link gets too many knocks; try again in a minute")
        raise UnknownLink()

    async def resume(self, host: str, resume: str, conn_id: str) -> Step | dict[str, Any]:
        """Take the guest's place back (a ``Step`` with its place), or the
        stored outcome if it was answered meanwhile."""
        guest_id = resume.split("~", 1)[0]
        (step,) = await self.node.store.transition(
            host, lobby.LobbyEvent.RESUME, [(guest_id, b"")], conn=conn_id, resume=resume
        )
        if step.status == "ok":
            return step
        if step.status == "already_resolved" and step.outcome is not None:
            return step.outcome
        raise UnknownGuest("this place in the waiting room is gone; knock again")

    async def disconnect(self, host: str, guest_id: str, conn_id: str) -> None:
        window_ms = int(self.node.settings.resume_window * 1000)
        (step,) = await self.node.store.transition(
            host, lobby.LobbyEvent.DISCONNECT, [(guest_id, b"")], conn=conn_id, window_ms=window_ms
        )
        if step.status == "ok":
            await self.node.store.schedule_expiry(host, guest_id, now_ms() + window_ms)

    async def cancel(self, host: str, guest_id: str) -> None:
        await self.node.store.transition(host, lobby.LobbyEvent.CANCEL, [(guest_id, b"")])

    # -- host replies -----------------------------------------------------------------

    async def outcome(
        self,
        host: str,
        action: str,
        guest_id: str,
        *,
        title: str | None = None,
        message: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """The message the guest will get for ``action``, and the merge meeting id."""
        if options is None:
            options = self.node.hub.guest_options(host, guest_id)
        if options is None:  # not announced here: read it (the script checks the state)
            found = await self.node.store.guest_info(host, guest_id)
            if found is None:
                raise UnknownGuest()
            state, info = found
            if lobby.GuestState(state) not in lobby.QUEUED:
                raise AlreadyResolved()
            options = info.get("options") or {}
        meetings = self.node.meetings
        if action in ("busy", "deny"):
            out: dict[str, Any] = {"type": "busy" if action == "busy" else "denied"}
            if message:
                out["message"] = message
            return out, ""
        if action == "admit":
            record = await self.host_record(host)
            meeting = meetings.personal(record["room"], options)
            return {"type": "admitted", "mode": "admit", "meeting": meeting}, ""
        if action == "merge":
            state, declared = await self.node.store.presence(host)
            if state != "in_meeting" or not declared:
                raise NotInMeeting()
            meeting = meetings.declared(declared, options)
            return {"type": "admitted", "mode": "merge", "meeting": meeting}, str(declared["id"])
        if action == "new_meeting":
            opts = {**options, **({"title": title} if title else {})}
            return {"type": "admitted", "mode": "new_meeting", "meeting": meetings.new(opts)}, ""
        raise BadMessage(f"unknown reply '{action}'")

    async def reply(
        self,
        host: str,
        action: str,
        guest_id: str,
        *,
        title: str | None = None,
        message: str | None = None,
    ) -> None:
        outcome, merge_id = await self.outcome(host, action, guest_id, title=title, message=message)
        await self.node.store.reply_one(
            host, lobby.LobbyEvent(action), guest_id, pack(outcome), merge_id
        )

    async def admit_all(self, host: str) -> int:
        """Admit every guest waiting now, oldest first, in one atomic step."""
        ids = await self.node.store.waiting_ids(host)
        pairs: list[tuple[str, bytes]] = []
        for gid in ids:
            found = await self.node.store.guest_info(host, gid)
            if found is None:
                continue
            outcome, _ = await self.outcome(host, "admit", gid, options=found[1]["options"])
            pairs.append((gid, pack(outcome)))
        if not pairs:
            return 0
        steps = await self.node.store.transition(host, lobby.LobbyEvent.ADMIT, pairs)
        return sum(1 for s in steps if s.status == "ok")
