"""The host directory in Redis: host records, slugs, settings and scheduled
sessions. Every command goes through the ``Batcher``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any, TypedDict

from protocol.errors import HostExists, InternalError, SlugTaken, UnknownHost
from protocol.links import slug_base, slug_with_suffix, validate_slug
from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, text

DEFAULT_SETTINGS: dict[str, Any] = {
    "email_notifications": True,
    "meeting_defaults": {
        "duration": 30,
        "region": None,
        "announce": False,
        "autodelete": False,
        "recording": "manual",
    },
    "policy": {
        "bypass": "nobody",
        "locked": False,
        "allow": [],
        "block": [],
        "block_unverified": [],
    },
}
CAS_ATTEMPTS = 100


class HostRecord(TypedDict):
    id: str
    name: str
    email: str | None
    slug: str
    room: str
    created_at: int
    settings: dict[str, Any]
    retired: list[str]  # old slugs the host retired: they answer "no longer in use"
    previous: list[str]  # every slug the host had before (kept or retired)


def record_from_hash(raw: dict[str, str]) -> HostRecord | None:
    """A host record from its hash (``HGETALL``), or ``None`` if there is none."""
    if not raw.get("id"):
        return None
    return {
        "id": raw["id"],
        "name": raw.get("name", ""),
        "email": raw.get("email") or None,
        "slug": raw.get("slug", ""),
        "room": raw.get("room", ""),
        "created_at": int(raw.get("created_at") or 0),
        "settings": json.loads(raw.get("settings") or "{}"),
        "retired": json.loads(raw.get("retired") or "[]"),
        "previous": json.loads(raw.get("previous") or "[]"),
    }


def _policy_keys(host: str) -> list[str]:
    t = keys.tag(host)
    return [keys.host(host), f"{t}:block", f"{t}:allow", f"{t}:block-unverified"]


class HostStore:
    """Host records, slugs, settings and sessions."""

    def __init__(self, batch: Batcher, *, publish_command: str = "PUBLISH") -> None:
        self.batch = batch
        self.publish_command = publish_command

    async def create_host(self, host: str, name: str, email: str | None) -> HostRecord:
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
        flat = [item for pair in record.items() for item in pair]
        if not int(await self.batch.script("create_host", _policy_keys(host), flat)):
            await self._release_slug(slug, host)
            raise HostExists("a host with this id exists")
        created = await self.get_host(host)
        if created is None:
            raise InternalError()
        return created

    async def _claim_generated_slug(self, host: str, name: str) -> str:
        base = slug_base(name)
        for attempt in range(12):
            slug = base if attempt == 0 else slug_with_suffix(base, secrets.token_hex(2))
            if await self.batch.call("SET", keys.slug(slug), host, "NX", replayable=False):
                return slug
        return slug_with_suffix(base, secrets.token_hex(6))

    async def _release_slug(self, slug: str, host: str) -> None:
        if text(await self.batch.call("GET", keys.slug(slug))) == host:
            await self.batch.call("DEL", keys.slug(slug))

    async def get_host(self, host: str) -> HostRecord | None:
        raw = await self.batch.call("HGETALL", keys.host(host))
        return record_from_hash({text(k): text(v) for k, v in (raw or {}).items()})

    async def require_host(self, host: str) -> HostRecord:
        record = await self.get_host(host)
        if record is None:
            raise UnknownHost("no such host")
        return record

    async def host_for_slug(self, slug: str) -> str | None:
        return text(await self.batch.call("GET", keys.slug(slug))) or None

    async def change_slug(self, host: str, requested: str, *, retire_old: bool = False) -> str:
        """Claim ``requested`` for ``host``. The old slug stays reserved to the
        host: kept, it keeps leading to this host's room (a redirect); retired
        (``retire_old``: a leaked link), it answers "no longer in use" at once.
        Taking a retired slug back brings it back to life."""
        slug = validate_slug(requested)
        record = await self.require_host(host)
        owner = text(await self.batch.call("GET", keys.slug(slug)))
        if owner and owner != host:
            raise SlugTaken("this slug belongs to another host")
        if not owner and not await self.batch.call(
            "SET", keys.slug(slug), host, "NX", replayable=False
        ):
            raise SlugTaken("this slug belongs to another host")  # lost the race
        retired = [old for old in record["retired"] if old != slug]
        if retire_old and record["slug"] != slug and record["slug"] not in retired:
            retired.append(record["slug"])
        # Calendar rewriting recognises the personal link in any slug it had.
        previous = [old for old in record["previous"] if old != slug]
        if record["slug"] != slug and record["slug"] not in previous:
            previous.append(record["slug"])
        # Through the settings script: every process drops its cached record
        # (the knock path reads ``retired`` from it) in the same step.
        fields = {"slug": slug, "retired": json.dumps(retired), "previous": json.dumps(previous)}
        await self.patch_settings(host, lambda current: current, fields=fields)
        return slug

    async def patch_settings(
        self,
        host: str,
        merge: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        name: str | None = None,
        email: str | None = None,
        fields: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Read, merge and compare-and-set the settings (retried on a concurrent
        change, so no update is lost); the script tells every device."""
        extra: list[str] = []
        if name is not None:
            extra += ["name", name]
        if email is not None:
            extra += ["email", email]
        for field, value in (fields or {}).items():
            extra += [field, value]
        for _ in range(CAS_ATTEMPTS):
            raw = await self.batch.call("HGET", keys.host(host), "settings")
            if raw is None:
                raise UnknownHost("no such host")
            settings = merge(json.loads(raw))
            args = [raw, json.dumps(settings), keys.channel(host), self.publish_command]
            done = int(
                await self.batch.script("cas", _policy_keys(host), [*args, pack(settings), *extra])
            )
            if done == 1:
                return settings
            if done == -1:
                raise UnknownHost("no such host")
        raise InternalError("settings kept changing; try again")

    async def create_session(self, host: str, session: dict[str, Any], ttl_s: int) -> str:
        sid = secrets.token_urlsafe(9)
        key = f"{keys.tag(host)}:session:{sid}"
        await self.batch.call("SET", key, json.dumps(session), "EX", max(ttl_s, 60))
        return sid

    async def get_session(self, host: str, sid: str) -> dict[str, Any] | None:
        raw = await self.batch.call("GET", f"{keys.tag(host)}:session:{sid}")
        found: dict[str, Any] | None = json.loads(raw) if raw else None
        return found
