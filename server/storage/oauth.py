"""The OAuth authorization server's records in Redis: registered clients,
authorization codes and bearer tokens (docs/meetings.md, Connecting an account).

No secret is stored: a client secret, a code and a token are kept under the
SHA-256 of their value (they are random, 256 bits, so a hash is enough), and a
leaked dump of Redis lets nobody in. Every command goes through the ``Batcher``.

Keys: ``foyer:oauth:client:<id>`` (msgpack), ``foyer:oauth:code:<hash>`` (lives
as long as the code), ``foyer:oauth:code-used:<hash>`` (``SET NX``: the one
exchange that won; a second use finds it), ``foyer:oauth:token:<hash>`` (an
access or refresh token, with its TTL), and under the host's hash tag
``{h:<host>}:oauth:<workspace>``: the grant that (workspace, host) holds now and
its tokens, so connecting again or disconnecting revokes them all.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import astuple, dataclass
from typing import Any

from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import now_ms, pack, unpack

PREFIX = "foyer:oauth"
USED_TTL_MS = 10 * 60_000  # a code's "used" mark outlives the code itself


def digest(secret: str) -> str:
    """What a secret is stored (and looked up) as."""
    return hashlib.sha256(secret.encode()).hexdigest()


def client_key(client_id: str) -> str:
    return f"{PREFIX}:client:{client_id}"


def code_key(code: str) -> str:
    return f"{PREFIX}:code:{digest(code)}"


def code_used_key(code: str) -> str:
    return f"{PREFIX}:code-used:{digest(code)}"


def token_key(hashed: str) -> str:
    return f"{PREFIX}:token:{hashed}"


def grant_key(workspace: str, host: str) -> str:
    return f"{keys.tag(host)}:oauth:{workspace}"


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A workspace app registered with the API key: confidential (it holds a
    secret), or public (none: a native or browser app, PKCE alone)."""

    client_id: str
    workspace: str
    name: str
    redirect_uris: tuple[str, ...]
    secret_hash: str  # "" for a public client
    created_ms: int

    @property
    def public(self) -> bool:
        return not self.secret_hash


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What an authorization code stands for: the host's consent, bound to the
    client, the redirect URI and the PKCE challenge."""

    client_id: str
    host: str
    redirect_uri: str
    scope: str
    challenge: str
    method: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a bearer token stands for (``kind``: ``access`` or ``refresh``)."""

    kind: str
    client_id: str
    workspace: str
    host: str
    scope: str
    grant: str  # the id of the exchange that issued it (and its refreshes)
    expires_ms: int
    connected_ms: int  # the connection it made: a newer one (or none) ends it

    @property
    def live(self) -> bool:
        return self.expires_ms > now_ms()


@dataclass(frozen=True, slots=True)
class Redeemed:
    """The exchange that used a code: the grant it made, for whom, by whom."""

    grant: str
    workspace: str
    host: str
    client_id: str


def _redeemed(raw: bytes | None) -> Redeemed | None:
    return None if raw is None else Redeemed(*unpack(raw))


class OAuthStore:
    def __init__(self, batch: Batcher) -> None:
        self.batch = batch

    # -- clients

    async def save_client(self, client: OAuthClient) -> None:
        value = pack(
            [
                client.workspace,
                client.name,
                list(client.redirect_uris),
                client.secret_hash,
                client.created_ms,
            ]
        )
        await self.batch.call("SET", client_key(client.client_id), value)

    async def client(self, client_id: str) -> OAuthClient | None:
        raw = await self.batch.call("GET", client_key(client_id))
        if raw is None:
            return None
        workspace, name, uris, secret_hash, created_ms = unpack(raw)
        return OAuthClient(
            client_id, str(workspace), str(name), tuple(uris), str(secret_hash), int(created_ms)
        )

    async def delete_client(self, client_id: str) -> bool:
        """Its tokens stop working at once (a bearer check looks the client up)."""
        return bool(await self.batch.call("DEL", client_key(client_id)))

    # -- authorization codes

    async def save_code(self, code: str, grant: CodeGrant) -> None:
        ttl_ms = max(1, grant.expires_ms - now_ms())
        value = pack(
            [
                grant.client_id,
                grant.host,
                grant.redirect_uri,
                grant.scope,
                grant.challenge,
                grant.method,
                grant.expires_ms,
            ]
        )
        await self.batch.call("SET", code_key(code), value, "PX", ttl_ms)

    async def code(self, code: str) -> tuple[CodeGrant | None, Redeemed | None]:
        """The code's grant (``None`` once it expired) and, if it was
        exchanged already, what that exchange made."""
        raw, used = await asyncio.gather(
            self.batch.call("GET", code_key(code)), self.batch.call("GET", code_used_key(code))
        )
        found = None
        if raw is not None:
            client_id, host, redirect_uri, scope, challenge, method, expires_ms = unpack(raw)
            found = CodeGrant(
                str(client_id),
                str(host),
                str(redirect_uri),
                str(scope),
                str(challenge),
                str(method),
                int(expires_ms),
            )
        return found, _redeemed(used)

    async def redeem_code(self, code: str, redeemed: Redeemed) -> Redeemed | None:
        """Mark the code used: None if this exchange won, else what the
        exchange that won first made (one atomic ``SET NX``)."""
        mark = pack(list(astuple(redeemed)))
        key = code_used_key(code)
        won = await self.batch.call("SET", key, mark, "NX", "PX", USED_TTL_MS, replayable=False)
        if won:
            self.batch.fire("DEL", code_key(code))
            return None
        return _redeemed(await self.batch.call("GET", key)) or redeemed

    # -- tokens

    async def token(self, token: str) -> TokenGrant | None:
        raw = await self.batch.call("GET", token_key(digest(token)))
        if raw is None:
            return None
        found = TokenGrant(*unpack(raw))
        return found if found.live else None

    async def spend(self, token: str) -> bool:
        """Delete a token (a refresh token being rotated); ``False`` if it was
        gone already (another refresh won)."""
        return bool(await self.batch.call("DEL", token_key(digest(token)), replayable=False))

    async def issue(self, tokens: dict[str, TokenGrant]) -> None:
        """Store the tokens of one grant (token -> what it stands for) as the
        one grant of their (workspace, host): the tokens that grant held before
        are revoked (a reconnect, or a refresh replacing its access token)."""
        first = next(iter(tokens.values()))
        await self.revoke_for(first.workspace, first.host)
        hashed = [digest(t) for t in tokens]
        calls: list[Any] = []
        for h, grant in zip(hashed, tokens.values(), strict=True):
            value = pack(list(astuple(grant)))
            calls.append(
                self.batch.call("SET", token_key(h), value, "PX", grant.expires_ms - now_ms())
            )
        last = max(g.expires_ms for g in tokens.values())
        record = pack([first.grant, first.client_id, hashed])
        key = grant_key(first.workspace, first.host)
        calls.append(self.batch.call("SET", key, record, "PX", max(1, last - now_ms())))
        await asyncio.gather(*calls)

    async def revoke_for(self, workspace: str, host: str, grant: str | None = None) -> bool:
        """Revoke every token of the host's grant in this workspace (only if it
        is ``grant``, when given); ``False`` if there was none."""
        key = grant_key(workspace, host)
        raw = await self.batch.call("GET", key)
        if raw is None:
            return False
        current, _client, hashed = unpack(raw)
        if grant is not None and current != grant:
            return False
        await asyncio.gather(
            *(self.batch.call("DEL", token_key(h)) for h in hashed), self.batch.call("DEL", key)
        )
        return True
