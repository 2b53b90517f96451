"""Connected CalDAV calendars in Redis: the connection (credentials sealed by
``server.access.credentials``), the sync state, and the per-event memory that
makes sync idempotent across rounds, processes and restarts.

Every key of a host's calendars sits under the host's hash tag, so a round's
fenced commit (``cal_commit.lua``) is one atomic step on a Cluster too:

- ``foyer:{h:<host>}:calendars``: hash name -> the connection (msgpack)
- ``...:cal:<name>:state``: hash (sync token, last sync, counters, last error)
- ``...:cal:<name>:etags``: hash href -> the ETag Foyer last saw or wrote
- ``...:cal:<name>:events``: hash href -> the event Foyer rewrote (its key and
  meeting), so a moved, retitled or deleted event takes its meeting along
- ``...:cal:<name>:lease`` and ``...:cal-fence``: who syncs it now (a token)
- ``foyer:calendar-due``: zset "host\\nname" -> when its next round is due
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, text, unpack

CALENDARS_DUE = "foyer:calendar-due"


def _calendars(host: str) -> str:
    return f"{keys.tag(host)}:calendars"


def _cal(host: str, name: str, part: str) -> str:
    return f"{keys.tag(host)}:cal:{name}:{part}"


def _fence(host: str) -> str:
    return f"{keys.tag(host)}:cal-fence"


def due_member(host: str, name: str) -> str:
    return f"{host}\n{name}"


@dataclass(frozen=True, slots=True)
class Connection:
    """One connected calendar. ``sealed`` is the encrypted password."""

    host: str
    name: str
    url: str
    username: str
    sealed: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class SyncedEvent:
    """An event Foyer rewrote: its key (UID|RECURRENCE-ID) and its meeting."""

    key: str
    meeting: str


@dataclass(frozen=True, slots=True)
class Memory:
    """What the last rounds left: the sync token, the ETags, the rewritten events."""

    sync_token: str
    etags: dict[str, str]
    events: dict[str, SyncedEvent]


class CalendarStore:
    def __init__(self, batch: Batcher) -> None:
        self.batch = batch

    # -- connections ---------------------------------------------------------------

    async def put(self, connection: Connection) -> None:
        """Connect (or reconnect: the sync memory is kept) and make it due now."""
        record = pack(asdict(connection))
        put = self.batch.call("HSET", _calendars(connection.host), connection.name, record)
        due = self.batch.call(
            "ZADD", CALENDARS_DUE, now_ms(), due_member(connection.host, connection.name)
        )
        await put
        await due

    async def get(self, host: str, name: str) -> Connection | None:
        raw = await self.batch.call("HGET", _calendars(host), name)
        return Connection(**unpack(raw)) if raw else None

    async def all(self, host: str) -> list[Connection]:
        raw = await self.batch.call("HGETALL", _calendars(host))
        found = [Connection(**unpack(v)) for v in raw.values()]
        return sorted(found, key=lambda c: c.name)

    async def delete(self, host: str, name: str) -> bool:
        """Disconnect: the credentials and everything synced are forgotten."""
        removed = self.batch.call("HDEL", _calendars(host), name)
        parts = [_cal(host, name, p) for p in ("state", "etags", "events", "lease")]
        wipe = [self.batch.call("DEL", key) for key in parts]
        unschedule = self.batch.call("ZREM", CALENDARS_DUE, due_member(host, name))
        for call in wipe:
            await call
        await unschedule
        return bool(await removed)

    async def state(self, host: str, name: str) -> dict[str, str]:
        raw = await self.batch.call("HGETALL", _cal(host, name, "state"))
        return {text(k): text(v) for k, v in raw.items()}

    # -- rounds ----------------------------------------------------------------------

    async def claim_due(self, claim_ms: int, limit: int = 10) -> list[tuple[str, str]]:
        """Calendars whose round is due, each claimed for ``claim_ms`` (one process
        takes each; a claim not moved on by its round comes back by itself)."""
        reply = await self.batch.script("due", [CALENDARS_DUE], [now_ms(), limit, claim_ms])
        out: list[tuple[str, str]] = []
        for i in range(0, len(reply), 2):
            host, _, name = text(reply[i]).partition("\n")
            out.append((host, name))
        return out

    async def schedule(self, host: str, name: str, at_ms: int) -> None:
        """The next round (only while the calendar is connected)."""
        if await self.get(host, name) is not None:
            await self.batch.call("ZADD", CALENDARS_DUE, at_ms, due_member(host, name))

    async def lease(self, host: str, name: str, ttl_ms: int, token: int = 0) -> int:
        """Take (``token`` 0) or renew the lease; 0 when another holder has it."""
        keys_ = [_cal(host, name, "lease"), _fence(host)]
        return int(await self.batch.script("cal_lease", keys_, [ttl_ms, str(token or "")]))

    async def memory(self, host: str, name: str) -> Memory:
        state = self.batch.call("HGET", _cal(host, name, "state"), "sync_token")
        etags = self.batch.call("HGETALL", _cal(host, name, "etags"))
        events = self.batch.call("HGETALL", _cal(host, name, "events"))
        return Memory(
            sync_token=text(await state),
            etags={text(k): text(v) for k, v in (await etags).items()},
            events={text(k): SyncedEvent(**unpack(v)) for k, v in (await events).items()},
        )

    async def commit(
        self,
        host: str,
        name: str,
        token: int,
        *,
        state: dict[str, Any],
        etags: dict[str, str] | None = None,
        gone: list[str] | None = None,
        events: dict[str, SyncedEvent] | None = None,
        unmapped: list[str] | None = None,
        release: bool = False,
    ) -> bool:
        """Write a round's results, fenced: False (nothing written) when the lease
        is no longer this token's."""
        change = {
            "state": {k: str(v) for k, v in state.items()},
            "etags": etags or {},
            "gone": gone or [],
            "events": {h: asdict(e) for h, e in (events or {}).items()},
            "unmapped": unmapped or [],
            "release": release,
        }
        keys_ = [_cal(host, name, p) for p in ("lease", "state", "etags", "events")]
        return bool(await self.batch.script("cal_commit", keys_, [str(token), pack(change)]))
