"""The OAuth records on the suite's real Valkey: a code is redeemed by exactly
one of many exchanges sent in the same pipeline, and no secret is stored."""

from __future__ import annotations

import asyncio
import secrets

from server.storage.oauth import (
    CodeGrant,
    OAuthClient,
    OAuthStore,
    Redeemed,
    TokenGrant,
    digest,
)
from server.storage.values import now_ms
from tests.server.storage.conftest import Stores


def _code_grant(host: str) -> CodeGrant:
    return CodeGrant("fc_x", host, "https://app.example/cb", "meetings:write", "c", "S256",
                     now_ms() + 60_000)  # fmt: skip


async def test_exactly_one_exchange_redeems_a_code(stores: Stores) -> None:
    store = OAuthStore(stores.store.batch)
    code = secrets.token_urlsafe(16)
    await store.save_code(code, _code_grant("h-race"))
    marks = [Redeemed(f"g{i}", "ws", "h-race", "fc_x") for i in range(8)]
    results = await asyncio.gather(*(store.redeem_code(code, m) for m in marks))  # one pipeline
    winners = [m for m, lost in zip(marks, results, strict=True) if lost is None]
    assert len(winners) == 1
    assert {lost for lost in results if lost is not None} == {winners[0]}
    found, used = await store.code(code)
    assert found is None and used == winners[0]


async def test_no_secret_is_stored_in_the_clear(stores: Stores) -> None:
    store = OAuthStore(stores.store.batch)
    secret, code, token = (secrets.token_urlsafe(32) for _ in range(3))
    client = OAuthClient("fc_" + secrets.token_hex(6), "ws", "App", ("https://a.example/cb",),
                         digest(secret), now_ms())  # fmt: skip
    await store.save_client(client)
    await store.save_code(code, _code_grant("h-clear"))
    grant = TokenGrant("access", client.client_id, "ws", "h-clear", "meetings:write", "g",
                       now_ms() + 60_000, now_ms())  # fmt: skip
    await store.issue({token: grant})
    assert await store.token(token) == grant
    dump = b"".join(
        [
            k + (await stores.redis.dump(k) or b"")
            async for k in stores.redis.scan_iter(match="foyer:*oauth*")
        ]
    )
    for value in (secret, code, token):
        assert value.encode() not in dump
    assert await store.revoke_for("ws", "h-clear") is True
    assert await store.token(token) is None
