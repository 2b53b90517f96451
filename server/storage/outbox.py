"""The webhook outbox in Redis: one stream per host, the index of hosts due.

``knock.lua``, ``transition.lua`` and ``presence.lua`` append each lifecycle
event to ``foyer:{h:<host>}:outbox`` in the same atomic step that publishes it
(when webhooks are on), and the ``Store`` marks the host in the
``foyer:outbox-hosts`` schedule right behind. A delivery worker in any process
claims due hosts with ``due.lua`` (a claim that is not released, because its
process died, runs out and another process takes the host), reads the
host's entries, and removes each once every endpoint it is owed to has it (or
gave up on it). What each endpoint is still owed of an entry (attempts, next
attempt) lives in a hash beside the stream, so a retry schedule survives a
crash too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, text, unpack

READ_LIMIT = 100  # entries of one host read per pass


@dataclass(frozen=True, slots=True)
class Entry:
    """One outbox entry: its stream id, its fields, and what is left to do:
    ``pending`` maps each endpoint still owed the event to (attempts, next
    attempt ms); None means never tried yet (every matching endpoint is owed)."""

    id: str
    fields: dict[str, bytes]
    pending: dict[str, tuple[int, int]] | None = None

    @property
    def created_ms(self) -> int:
        """When the script wrote it (a stream id starts with the server's ms)."""
        return int(self.id.split("-", 1)[0])

    @property
    def redelivery(self) -> tuple[str, str, bytes] | None:
        """(endpoint, webhook-id, body) when this entry redelivers one event."""
        if "redeliver" not in self.fields:
            return None
        f = self.fields
        return text(f["to"]), text(f["msg"]), f["redeliver"]


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
        state = {text(k): v for k, v in (await tries).items()}
        out: list[Entry] = []
        for raw_id, raw_fields in await rows:
            entry_id = text(raw_id)
            fields = {text(k): bytes(v) for k, v in raw_fields.items()}
            raw = state.get(entry_id)
            pending = None
            if raw is not None:
                pending = {str(k): (int(v[0]), int(v[1])) for k, v in unpack(raw).items()}
            out.append(Entry(entry_id, fields, pending))
        return out

    async def done(self, host: str, entry_id: str) -> None:
        """Every endpoint got the entry (or gave up on it): remove it."""
        xdel = self.batch.call("XDEL", keys.outbox(host), entry_id)
        hdel = self.batch.call("HDEL", keys.outbox_tries(host), entry_id)
        await xdel
        await hdel

    async def owed(self, host: str, entry_id: str, pending: dict[str, tuple[int, int]]) -> None:
        """What is still owed of the entry: endpoint -> (attempts, next attempt ms)."""
        packed = pack({k: list(v) for k, v in pending.items()})
        await self.batch.call("HSET", keys.outbox_tries(host), entry_id, packed)

    async def append(self, host: str, kind: str, data: bytes) -> None:
        """An event made outside the lifecycle scripts (a meeting, a booking):
        its type and its JSON ``data``, appended and marked due."""
        add = self.batch.call(
            "XADD",
            keys.outbox(host),
            "MAXLEN",
            "~",
            keys.OUTBOX_MAX,
            "*",
            "type",
            kind,
            "json",
            data,
        )
        mark = self.batch.call("ZADD", keys.OUTBOX_HOSTS, "LT", now_ms(), host)
        await add
        await mark

    async def redeliver(self, host: str, endpoint: str, message_id: str, body: bytes) -> None:
        """Queue one event again for one endpoint, with its original webhook-id
        (a receiver that has it already de-duplicates)."""
        fields = {"redeliver": body, "to": endpoint, "msg": message_id}
        add = self.batch.call("XADD", keys.outbox(host), "*", *_flat(fields))
        mark = self.batch.call("ZADD", keys.OUTBOX_HOSTS, "LT", now_ms(), host)
        await add
        await mark


def _flat(fields: dict[str, Any]) -> list[Any]:
    return [x for pair in fields.items() for x in pair]
