"""Connections: which video-conferencing account a user has connected in a
workspace (docs/meetings.md, Connections).

The rules, from a scheduling tool: one account per (workspace, user) at a
time, connecting again replaces it (a reconnect); the same account may serve
several workspaces; users connect independently. A booking gets a meeting
link only while its host is connected (``server.meetings.bookings``).

A connection is one Redis value (msgpack) under the user's hash tag, so a
connect that replaces the previous one is a single ``SET``: never half of
each. The ``oauth`` flow calls ``connect`` with ``provider="foyer"`` once a
grant is made; the HTTP API with ``template`` or ``webhook``.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import InvalidBody
from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, unpack

PROVIDERS = ("template", "webhook", "foyer")
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class Connection:
    workspace: str
    user: str  # the host id
    provider: str  # "template" | "webhook" | "foyer" (an OAuth grant)
    account: str
    connected_ms: int


def _name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidBody(f"{field} must be a non-empty string")
    if len(value) > MAX_NAME or any(ord(c) < 32 for c in value):
        raise InvalidBody(f"{field} must be at most {MAX_NAME} printable characters")
    return value


def key(workspace: str, user: str) -> str:
    return f"{keys.tag(user)}:conn:{workspace}"


class Connections:
    """One connection per (workspace, user), in Redis."""

    def __init__(self, batch: Batcher) -> None:
        self.batch = batch

    async def connect(self, workspace: str, user: str, provider: str, account: str) -> Connection:
        """Connect ``account`` for ``user`` in ``workspace``, replacing any
        previous connection there (a reconnect: its time is now)."""
        _name("workspace", workspace)
        _name("user", user)
        _name("account", account)
        if provider not in PROVIDERS:
            raise InvalidBody(f"provider must be one of {', '.join(PROVIDERS)}")
        conn = Connection(workspace, user, provider, account, now_ms())
        value = pack([conn.provider, conn.account, conn.connected_ms])
        await self.batch.call("SET", key(workspace, user), value)
        return conn

    async def get(self, workspace: str, user: str) -> Connection | None:
        raw = await self.batch.call("GET", key(workspace, user))
        if raw is None:
            return None
        provider, account, connected_ms = unpack(raw)
        return Connection(workspace, user, str(provider), str(account), int(connected_ms))

    async def disconnect(self, workspace: str, user: str) -> bool:
        """Forget the connection; ``False`` if there was none."""
        return bool(await self.batch.call("DEL", key(workspace, user)))
