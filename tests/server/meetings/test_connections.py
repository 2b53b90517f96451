"""Connections on the real store: one account per (workspace, user), a
reconnect replaces it, one account may serve several workspaces, users are
independent, a disconnect forgets it."""

from __future__ import annotations

import uuid

import pytest

from protocol.errors import InvalidBody
from server.meetings.connections import Connections
from server.storage.batcher import Batcher


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_connect_get_and_reconnect_replaces(batch: Batcher) -> None:
    conns = Connections(batch)
    ws, user = _id("ws"), _id("u")
    assert await conns.get(ws, user) is None
    first = await conns.connect(ws, user, "template", "ada@zoom")
    assert await conns.get(ws, user) == first
    second = await conns.connect(ws, user, "webhook", "ada@meet")
    got = await conns.get(ws, user)
    assert got == second and got.provider == "webhook" and got.account == "ada@meet"
    assert got.connected_ms >= first.connected_ms


async def test_one_account_across_workspaces_and_users_are_independent(batch: Batcher) -> None:
    conns = Connections(batch)
    ws1, ws2, ada, bob = _id("ws"), _id("ws"), _id("u"), _id("u")
    await conns.connect(ws1, ada, "template", "shared")
    await conns.connect(ws2, ada, "template", "shared")
    assert await conns.get(ws2, bob) is None
    await conns.connect(ws2, bob, "webhook", "bob")
    assert await conns.disconnect(ws1, ada) is True
    assert await conns.get(ws1, ada) is None
    still = await conns.get(ws2, ada)
    assert still is not None and still.account == "shared"
    bobs = await conns.get(ws2, bob)
    assert bobs is not None and bobs.account == "bob"
    assert await conns.disconnect(ws1, ada) is False


@pytest.mark.parametrize(
    ("provider", "account", "words"),
    [("zoom", "a", "provider must be one of"), ("template", "", "account must be")],
)
async def test_bad_input_is_refused_and_changes_nothing(
    batch: Batcher, provider: str, account: str, words: str
) -> None:
    conns = Connections(batch)
    ws, user = _id("ws"), _id("u")
    kept = await conns.connect(ws, user, "template", "kept")
    with pytest.raises(InvalidBody, match=words):
        await conns.connect(ws, user, provider, account)
    assert await conns.get(ws, user) == kept
