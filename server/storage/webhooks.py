"""Registered webhook endpoints and what each one was sent, in Redis.

An endpoint is one msgpack record in the ``foyer:webhooks`` hash: its URL, its
signing secrets (the newest first; an older one signs too until its overlap
window ends, so receivers can rotate without a gap), the event types and hosts
it wants (empty: all), and whether a 410 disabled it. Each endpoint also has a
bounded log of its latest attempts and a bounded dead-letter list, each entry
carrying the event, so either can be delivered again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, text, unpack

DEPLOYMENT = "deployment"  # the id of the FOYER_WEBHOOK_URL endpoint


@dataclass(frozen=True, slots=True)
class Secret:
    value: str  # whsec_<base64>
    until_ms: int = 0  # 0: current; else it signs until then (a rotation's overlap)


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    secrets: tuple[Secret, ...]
    events: tuple[str, ...] = ()  # event types it wants; () = every type
    hosts: tuple[str, ...] = ()  # hosts it wants; () = every host
    description: str = ""
    created_ms: int = 0
    disabled: str = ""  # why it is off ("gone": it answered 410); "" = on

    def wants(self, host: str, kind: str) -> bool:
        return (not self.events or kind in self.events) and (not self.hosts or host in self.hosts)

    def signing(self, at_ms: int) -> tuple[str, ...]:
        """The secrets that sign a delivery now: the current one and any still
        inside its overlap window."""
        return tuple(s.value for s in self.secrets if not s.until_ms or s.until_ms > at_ms)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["secrets"] = [[s.value, s.until_ms] for s in self.secrets]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Endpoint:
        secrets = tuple(Secret(str(v), int(u)) for v, u in record.get("secrets") or ())
        return cls(
            id=str(record["id"]),
            url=str(record["url"]),
            secrets=secrets,
            events=tuple(record.get("events") or ()),
            hosts=tuple(record.get("hosts") or ()),
            description=str(record.get("description") or ""),
            created_ms=int(record.get("created_ms") or 0),
            disabled=str(record.get("disabled") or ""),
        )

    def rotated(self, secret: str, overlap_ms: int, at_ms: int) -> Endpoint:
        """``secret`` becomes current; the old current one signs until the overlap
        ends; secrets whose window is over are dropped."""
        kept = [s for s in self.secrets if s.until_ms and s.until_ms > at_ms]
        old = [Secret(s.value, at_ms + overlap_ms) for s in self.secrets if not s.until_ms]
        if overlap_ms <= 0:
            old, kept = [], []
        return replace(self, secrets=(Secret(secret), *old, *kept))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try to deliver one event to one endpoint (the endpoint's log)."""

    id: str  # the webhook-id
    host: str
    type: str
    attempt: int
    result: str  # delivered | retrying | dead | gone
    status: str  # the HTTP status, or the error's name
    at: int
    event: dict[str, Any] = field(default_factory=dict)


class WebhookStore:
    def __init__(self, batch: Batcher) -> None:
        self.batch = batch

    async def endpoints(self) -> list[Endpoint]:
        raw = await self.batch.call("HGETALL", keys.WEBHOOKS)
        found = [Endpoint.from_record(unpack(v)) for v in raw.values()]
        return sorted(found, key=lambda e: (e.created_ms, e.id))

    async def get(self, endpoint_id: str) -> Endpoint | None:
        raw = await self.batch.call("HGET", keys.WEBHOOKS, endpoint_id)
        return Endpoint.from_record(unpack(raw)) if raw else None

    async def put(self, endpoint: Endpoint) -> None:
        await self.batch.call("HSET", keys.WEBHOOKS, endpoint.id, pack(endpoint.to_record()))

    async def delete(self, endpoint_id: str) -> bool:
        removed = self.batch.call("HDEL", keys.WEBHOOKS, endpoint_id)
        log = self.batch.call("DEL", keys.webhook_attempts(endpoint_id))
        dead = self.batch.call("DEL", keys.dead_letters(endpoint_id))
        await log
        await dead
        return bool(await removed)

    async def record(self, endpoint_id: str, attempt: Attempt) -> None:
        key = keys.webhook_attempts(endpoint_id)
        push = self.batch.call("LPUSH", key, pack(asdict(attempt)))
        trim = self.batch.call("LTRIM", key, 0, keys.ATTEMPTS_MAX - 1)
        await push
        await trim

    async def attempts(self, endpoint_id: str, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self.batch.call("LRANGE", keys.webhook_attempts(endpoint_id), 0, limit - 1)
        return [unpack(r) for r in raw]

    async def dead(self, endpoint_id: str, record: dict[str, Any]) -> None:
        """Keep a delivery that ran out of retries, newest first, bounded."""
        key = keys.dead_letters(endpoint_id)
        push = self.batch.call("LPUSH", key, pack(record))
        trim = self.batch.call("LTRIM", key, 0, keys.DEAD_MAX - 1)
        await push
        await trim

    async def dead_letters(
        self, endpoint_id: str, limit: int = keys.DEAD_MAX
    ) -> list[dict[str, Any]]:
        raw = await self.batch.call("LRANGE", keys.dead_letters(endpoint_id), 0, limit - 1)
        return [unpack(r) for r in raw]

    async def take_dead(self, endpoint_id: str, message_id: str) -> dict[str, Any] | None:
        """Remove and return the dead letter of ``message_id`` (None: not there)."""
        key = keys.dead_letters(endpoint_id)
        for raw in await self.batch.call("LRANGE", key, 0, -1):
            record = unpack(raw)
            if record.get("id") == message_id:
                await self.batch.call("LREM", key, 1, raw)
                return dict(record)
        return None

    async def gone(self) -> str:
        """The deployment URL that answered 410 Gone ("" if none)."""
        return text(await self.batch.call("GET", keys.WEBHOOK_GONE) or b"")

    async def mark_gone(self, url: str) -> None:
        await self.batch.call("SET", keys.WEBHOOK_GONE, url)

    async def clear_gone(self) -> None:
        await self.batch.call("DEL", keys.WEBHOOK_GONE)


def new_attempt(
    message_id: str, host: str, event: dict[str, Any], attempt: int, result: str, status: str
) -> Attempt:
    return Attempt(message_id, host, str(event["type"]), attempt, result, status, now_ms(), event)
