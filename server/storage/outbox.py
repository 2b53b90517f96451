"""The webhook outbox in Redis: one stream per host, the index of hosts due.

``knock.lua``, ``transition.lua`` and ``presence.lua`` append each lifecycle
event to ``foyer:{h:<host>}:outbox`` in the same atomic step that publishes it
(when webhooks are on), and the ``Store`` marks the host in the
``foyer:outbox-hosts`` schedule right behind. A delivery worker in any process
claims due hosts with ``due.lua`` (a claim that is not released, because its
process died, runs out and another process takes the host), reads the
host's entries, and removes each once delivered or dead-lettered. An entry's
attempts and next attempt live in a hash beside the stream, so a retry
schedule survives a crash too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, text

READ_LIMIT = 100  # entries of one host read per pass


@dataclass(frozen=True, slots=True)
class Entry:
    """One outbox entry: its stream id, its fields, and its retry state."""

    id: str
    fields: dict[str, bytes]
    attempts: int = 0
    next_ms: int = 0  # 0: due now

    @property
    def created_ms(self) -> int:
        """When the script wrote it (a stream id starts with the server's ms)."""
        return int(self.id.split("-", 1)[0])


class Outbox:
    def __init__(self, batch: Batcher) -> None:
        self.batch = batch

    async def claim(self, claim_ms: int, limit: int = 20) -> list[tuple[str, str]]:
        """Hosts whose outbox is due, each claimed for ``claim_ms``."""
        reply = await self.batch.script("due", [keys.OUTBOX_HOSTS], [now_ms(), limit, claim_ms])
        return [(text(reply[i]), text(reply[i + 1])) for i in range(0, len(reply), 2)]

    async def release(self, host: str, claim: str, next_ms: int | None) -> None:
        """Done with a claimed host: drop its mark (nothing left) or move it to
        ``next_ms``; either only if no new event marked it meanwhile."""
        if next_ms is None:
            await self.batch.script("done", [keys.OUTBOX_HOSTS], [host, claim])
        else:
            await self.batch.script("defer", [keys.OUTBOX_HOSTS], [host, claim, next_ms])

    async def entries(self, host: str, limit: int = READ_LIMIT) -> list[Entry]:
        """The oldest ``limit`` entries of the host's outbox, with retry state."""
        rows = self.batch.call("XRANGE", keys.outbox(host), "-", "+", "COUNT", limit)
        tries = self.batch.call("HGETALL", keys.outbox_tries(host))
        state = {text(k): text(v) for k, v in (await tries).items()}
        out: list[Entry] = []
        for raw_id, raw_fields in await rows:
            entry_id = text(raw_id)
            fields = {text(k): bytes(v) for k, v in raw_fields.items()}
            attempts, _, next_ms = state.get(entry_id, "0:0").partition(":")
            out.append(Entry(entry_id, fields, int(attempts), int(next_ms or 0)))
        return out

    async def delivered(self, host: str, entry_id: str) -> None:
        xdel = self.batch.call("XDEL", keys.outbox(host), entry_id)
        hdel = self.batch.call("HDEL", keys.outbox_tries(host), entry_id)
        await xdel
        await hdel

    async def retry_at(self, host: str, entry_id: str, attempts: int, at_ms: int) -> None:
        await self.batch.call("HSET", keys.outbox_tries(host), entry_id, f"{attempts}:{at_ms}")

    async def dead(self, host: str, entry_id: str, record: dict[str, Any]) -> None:
        """Keep a delivery that ran out of retries, newest first, bounded."""
        push = self.batch.call("LPUSH", keys.dead_letters(host), pack(record))
        trim = self.batch.call("LTRIM", keys.dead_letters(host), 0, keys.DEAD_MAX - 1)
        await push
        await trim
        await self.delivered(host, entry_id)

    async def dead_letters(self, host: str) -> list[bytes]:
        return [bytes(x) for x in await self.batch.call("LRANGE", keys.dead_letters(host), 0, -1)]

    async def gone(self) -> str:
        """The deployment URL that answered 410 Gone ("" if none)."""
        return text(await self.batch.call("GET", keys.WEBHOOK_GONE) or b"")

    async def mark_gone(self, url: str) -> None:
        await self.batch.call("SET", keys.WEBHOOK_GONE, url)
