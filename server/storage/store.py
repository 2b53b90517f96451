"""The Redis store: every read and write of Foyer's state lives here.

Keys of one host share the hash tag ``{h:<host>}`` so a host's state and its
channel sit on one Cluster slot. Atomic steps are Lua scripts (server/storage/lua),
sent through the ``Batcher``; the store is the truth and pub/sub only the
doorbell (DESIGN.md).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgpack
from redis.asyncio import Redis

from protocol import lobby
from protocol.errors import AlreadyResolved, InternalError, UnknownLink, error_for_code
from protocol.links import slug_base, slug_with_suffix, validate_slug
from server.storage.batcher import Batcher

log = logging.getLogger("foyer.store")

GUEST_TTL_MS = 24 * 3600 * 1000
EXPIRY_KEY = "foyer:expiry"
LEASE_KEY = "foyer:guest-leases"

DEFAULT_SETTINGS: dict[str, Any] = {
    "email_notifications": True,
    "meeting_defaults": {
        "duration": 30,
        "region": None,
        "announce": False,
        "autodelete": False,
        "recording": "manual",
    },
    "policy": {"bypass": "nobody", "locked": False, "allow": [], "block": []},
}


def now_ms() -> int:
    return int(time.time() * 1000)


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(raw: bytes | str) -> Any:
    return msgpack.unpackb(raw, raw=False)


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class SlugTaken(Exception):
    """The slug belongs to another host."""


class HostExists(Exception):
    """A host with this id exists already."""


@dataclass(frozen=True, slots=True)
class KnockResult:
    outcome: str  # ok | bypass | locked | blocked | rate_limited | unknown_link
    position: int = 0
    score: int = 0
    host_online: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """The result of one lobby event on one guest."""

    status: str  # ok | already_resolved | unknown_guest | stale | invalid | not_in_meeting
    state: str = ""
    outcome: dict[str, Any] | None = None  # the stored outcome, for a late resume
    position: int = 0
    score: int = 0
    counter: int = 0


def _load_scripts() -> dict[str, str]:
    table = lobby.lua_table()
    final = "{" + ",".join(f'["{s.value}"]=true' for s in lobby.FINAL) + "}"
    left = "{" + ",".join(f'["{s.value}"]="{r}"' for s, r in lobby.LEFT_REASON.items()) + "}"
    out = {}
    for name in ("knock", "transition", "expire", "due", "say", "presence", "cas"):
        src = resources.files("server.storage").joinpath(f"lua/{name}.lua").read_text()
        out[name] = (
            src.replace("__TRANSITIONS__", table)
            .replace("__FINAL__", final)
            .replace("__LEFT__", left)
        )
    return out


class Store:
    """Foyer's state in Redis/Valkey."""

    def __init__(self, redis: Redis, *, sharded: bool = False, lease_ms: int = 30_000) -> None:
        self.redis = redis
        self.lease_ms = lease_ms
        self.publish_command = "SPUBLISH" if sharded else "PUBLISH"
        self.batch = Batcher(redis, _load_scripts())

    async def start(self) -> None:
        await self.batch.start()

    async def stop(self) -> None:
        await self.batch.stop()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- keys ---------------------------------------------------------------

    @staticmethod
    def tag(host: str) -> str:
        return f"foyer:{{h:{host}}}"

    def channel(self, host: str) -> str:
        return f"{self.tag(host)}:events"

    def _guest_key(self, host: str, guest: str) -> str:
        return f"{self.tag(host)}:g:{guest}"

    # -- hosts --------------------------------------------------------------

    async def create_host(self, host: str, name: str, email: str | None) -> dict[str, Any]:
        key = f"{self.tag(host)}:host"
        if await self.redis.exists(key):
            raise HostExists(host)
        slug = await self._claim_generated_slug(host, name)
        record = {
            "id": host,
            "name": name,
            "email": email or "",
            "slug": slug,
            "room": "foyer-" + secrets.token_hex(6),
            "created_at": str(now_ms()),
            "settings": json.dumps(DEFAULT_SETTINGS),
        }
        # HSETNX on "id" decides the race between two creators of one id.
        if not await self.redis.hsetnx(key, "id", host):
            await self._release_slug(slug, host)
            raise HostExists(host)
        await self.redis.hset(key, mapping=record)  # type: ignore[arg-type]
        return await self.get_host(host) or {}

    async def _claim_generated_slug(self, host: str, name: str) -> str:
        base = slug_base(name)
        for attempt in range(12):
            slug = base if attempt == 0 else slug_with_suffix(base, secrets.token_hex(2))
            if await self.redis.set(f"foyer:slug:{slug}", host, nx=True):
                return slug
        return slug_with_suffix(base, secrets.token_hex(6))

    async def _release_slug(self, slug: str, host: str) -> None:
        key = f"foyer:slug:{slug}"
        if _s(await self.redis.get(key)) == host:
            await self.redis.delete(key)

    async def get_host(self, host: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(f"{self.tag(host)}:host")
        if not raw:
            return None
        rec = {_s(k): _s(v) for k, v in raw.items()}
        settings = json.loads(rec.get("settings") or "{}")
        return {
            "id": rec["id"],
            "name": rec.get("name", ""),
            "email": rec.get("email") or None,
            "slug": rec.get("slug", ""),
            "room": rec.get("room", ""),
            "created_at": int(rec.get("created_at") or 0),
            "settings": settings,
        }

    async def host_for_slug(self, slug: str) -> str | None:
        value = await self.redis.get(f"foyer:slug:{slug.lower()}")
        return _s(value) or None

    async def change_slug(self, host: str, requested: str) -> str:
        """Claim ``requested`` for ``host``; the old slug stays reserved to the
        host (it keeps leading to this host's room, never to anyone else's)."""
        slug = validate_slug(requested)
        key = f"foyer:slug:{slug}"
        owner = _s(await self.redis.get(key))
        if owner and owner != host:
            raise SlugTaken(slug)
        if not owner and not await self.redis.set(key, host, nx=True):
            raise SlugTaken(slug)  # lost the race for it
        await self.redis.hset(f"{self.tag(host)}:host", "slug", slug)
        return slug

    async def patch_settings(
        self,
        host: str,
        merge: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        name: str | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """Read, merge and compare-and-set the settings (retried on a concurrent
        change, so no update is lost), then tell every device."""
        key = f"{self.tag(host)}:host"
        extra: list[str] = []
        if name is not None:
            extra += ["name", name]
        if email is not None:
            extra += ["email", email]
        for _ in range(100):
            raw = await self.redis.hget(key, "settings")
            if raw is None:
                raise UnknownLink("no such host")
            settings = merge(json.loads(raw))
            done = await self.batch.script("cas", [key], [raw, json.dumps(settings), *extra])
            if int(done) == 1:
                break
            if int(done) == -1:
                raise UnknownLink("no such host")
        else:
            raise InternalError("settings kept changing; try again")
        await self.batch.call(
            self.publish_command, self.channel(host), pack("settings") + pack(0) + pack(settings)
        )
        return settings

    # -- sessions (scheduled sessions on the personal link) -----------------

    async def create_session(self, host: str, session: dict[str, Any], ttl_s: int) -> str:
        sid = secrets.token_urlsafe(9)
        key = f"{self.tag(host)}:session:{sid}"
        await self.redis.set(key, json.dumps(session), ex=max(ttl_s, 60))
        return sid

    async def get_session(self, host: str, sid: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"{self.tag(host)}:session:{sid}")
        return json.loads(raw) if raw else None

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
    ) -> KnockResult:
        t = self.tag(host)
        domain = email.rsplit("@", 1)[1] if "@" in email else ""
        reply = await self.batch.script(
            "knock",
            [
                f"{t}:host",
                f"{t}:q",
                self._guest_key(host, guest),
                f"{t}:ev",
                f"{t}:presence",
                f"{t}:devices",
                f"{t}:rl:{int(time.time()) // 60}",
            ],
            [
                guest,
                pack(info),
                resume,
                now_ms(),
                self.channel(host),
                self.publish_command,
                conn,
                email.lower(),
                domain.lower(),
                "1" if verified else "0",
                GUEST_TTL_MS,
                link_limit,
            ],
        )
        outcome = _s(reply[0])
        if outcome != "ok":
            return KnockResult(outcome)
        return KnockResult("ok", int(reply[1]), int(reply[2]), int(reply[3]) > 0)

    async def transition(
        self,
        host: str,
        event: lobby.LobbyEvent,
        guests: list[tuple[str, bytes]],
        *,
        conn: str = "",
        resume: str = "",
        window_ms: int = 30_000,
        merge_id: str = "",
    ) -> list[Step]:
        t = self.tag(host)
        keys = [f"{t}:q", f"{t}:presence", f"{t}:ev"]
        args: list[Any] = [
            event.value,
            now_ms(),
            self.channel(host),
            self.publish_command,
            conn,
            resume,
            window_ms,
            merge_id,
        ]
        for gid, payload in guests:
            keys.append(self._guest_key(host, gid))
            args += [gid, payload]
        replies = await self.batch.script("transition", keys, args)
        return [self._step(r) for r in replies]

    @staticmethod
    def _step(reply: list[Any]) -> Step:
        status = _s(reply[0])
        if status == "already_resolved":
            raw = reply[2] if len(reply) > 2 else b""
            return Step(status, _s(reply[1]), unpack(raw) if raw else None)
        if status == "ok" and len(reply) > 2:
            return Step(status, _s(reply[1]), None, int(reply[2]), int(reply[3]), int(reply[4]))
        return Step(status, _s(reply[1]) if len(reply) > 1 else "")

    async def reply_one(
        self, host: str, event: lobby.LobbyEvent, guest: str, payload: bytes, merge_id: str = ""
    ) -> Step:
        """One host reply; raises the protocol error when it does not apply."""
        (step,) = await self.transition(host, event, [(guest, payload)], merge_id=merge_id)
        if step.status == "ok":
            return step
        if step.status == "already_resolved":
            raise AlreadyResolved()
        if step.status == "invalid":
            raise AlreadyResolved("this guest is no longer waiting")
        raise error_for_code(step.status)

    async def guest_info(self, host: str, guest: str) -> tuple[str, dict[str, Any]] | None:
        state, info = await self.redis.hmget(self._guest_key(host, guest), ["state", "info"])
        if state is None or info is None:
            return None
        return _s(state), unpack(info)

    async def waiting(self, host: str) -> list[dict[str, Any]]:
        """Every guest still in the queue, oldest first."""
        t = self.tag(host)
        ids = await self.redis.zrange(f"{t}:q", 0, -1)
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for gid in ids:
            pipe.hmget(self._guest_key(host, _s(gid)), ["info", "state"])
        rows = await pipe.execute()
        guests = []
        for info, state in rows:
            if info:
                guest = unpack(info)
                if _s(state) == lobby.GuestState.AWAY:
                    guest["away"] = True  # dropped, within its resume window
                guests.append(guest)
        return guests

    async def event_counter(self, host: str) -> int:
        return int(await self.redis.get(f"{self.tag(host)}:ev") or 0)

    async def guest_outcome(self, host: str, guest: str) -> tuple[str, dict[str, Any] | None]:
        """A guest's state and, once answered, the outcome it was sent."""
        state, outcome = await self.redis.hmget(self._guest_key(host, guest), ["state", "outcome"])
        return _s(state) or "expired", (unpack(outcome) if outcome else None)

    async def waiting_ids(self, host: str) -> list[str]:
        return [_s(g) for g in await self.redis.zrange(f"{self.tag(host)}:q", 0, -1)]

    async def say(self, host: str, guest: str, text: str) -> None:
        status = _s(
            await self.batch.script(
                "say",
                [self._guest_key(host, guest)],
                [guest, text, self.channel(host), self.publish_command],
            )
        )
        if status != "ok":
            raise error_for_code(status)

    # -- host presence and devices ------------------------------------------

    async def set_presence(self, host: str, state: str, meeting: dict[str, Any] | None) -> None:
        await self.batch.script(
            "presence",
            [f"{self.tag(host)}:presence"],
            [
                state,
                pack(meeting) if meeting else "",
                (meeting or {}).get("id", ""),
                self.channel(host),
                self.publish_command,
            ],
        )

    async def presence(self, host: str) -> tuple[str, dict[str, Any] | None]:
        state, meeting = await self.redis.hmget(f"{self.tag(host)}:presence", ["state", "meeting"])
        return (_s(state) or "available"), (unpack(meeting) if meeting else None)

    async def device_up(self, host: str, device: str) -> None:
        await self.batch.call("ZADD", f"{self.tag(host)}:devices", now_ms() + self.lease_ms, device)

    def devices_refresh(self, devices: list[tuple[str, str]]) -> None:
        deadline = now_ms() + self.lease_ms
        for host, device in devices:
            self.batch.fire("ZADD", f"{self.tag(host)}:devices", deadline, device)

    async def device_down(self, host: str, device: str) -> None:
        await self.batch.call("ZREM", f"{self.tag(host)}:devices", device)

    async def host_online(self, host: str) -> bool:
        return int(await self.redis.zcount(f"{self.tag(host)}:devices", now_ms(), "+inf")) > 0

    # -- guest leases: a guest whose process died is treated as dropped -------

    def lease_guests(self, guests: list[tuple[str, str, str]]) -> None:
        """Renew the leases of (host, guest, connection id) held by this process."""
        if not guests:
            return
        deadline = now_ms() + self.lease_ms
        args: list[Any] = []
        for host, guest, conn in guests:
            args += [deadline, f"{host}\n{guest}\n{conn}"]
        self.batch.fire("ZADD", LEASE_KEY, *args)

    def drop_lease(self, host: str, guest: str, conn: str) -> None:
        self.batch.fire("ZREM", LEASE_KEY, f"{host}\n{guest}\n{conn}")

    async def sweep_leases(self, window_ms: int) -> int:
        """Mark away the guests whose holder stopped renewing (a crashed
        process); they can resume, or expire after the window as usual."""
        due = await self.batch.script("due", [LEASE_KEY], [now_ms(), 200])
        count = 0
        for member in due:
            host, guest, conn = _s(member).split("\n", 2)
            (step,) = await self.transition(
                host, lobby.LobbyEvent.DISCONNECT, [(guest, b"")], conn=conn, window_ms=window_ms
            )
            log.debug("lease of %s lapsed: %s %s", guest, step.status, step.state)
            if step.status == "ok":
                await self.schedule_expiry(host, guest, now_ms() + window_ms)
                count += 1
        return count

    # -- expiry -------------------------------------------------------------

    async def schedule_expiry(self, host: str, guest: str, deadline_ms: int) -> None:
        await self.batch.call("ZADD", EXPIRY_KEY, deadline_ms, f"{host}\n{guest}")

    async def expire_due(self) -> int:
        """Expire every guest whose resume window has passed; returns how many."""
        due = await self.batch.script("due", [EXPIRY_KEY], [now_ms(), 200])
        count = 0
        for member in due:
            host, _, guest = _s(member).partition("\n")
            t = self.tag(host)
            count += int(
                await self.batch.script(
                    "expire",
                    [f"{t}:q", f"{t}:ev", self._guest_key(host, guest)],
                    [guest, now_ms(), self.channel(host), self.publish_command],
                )
            )
        return count

    # -- rate limits ----------------------------------------------------------

    async def over_limit(self, bucket: str, limit: int, window_s: int = 60) -> bool:
        """Fixed-window counter: True when this hit is over ``limit``."""
        window = int(time.time()) // window_s
        key = f"foyer:rl:{bucket}:{window}"
        count = await self.batch.call("INCR", key)
        if int(count) == 1:
            self.batch.fire("EXPIRE", key, window_s + 1)
        return int(count) > limit
