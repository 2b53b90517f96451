"""The secret of a host's calendar feed URL: rotating it makes a new URL and
the old one stops working at once. Only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

from server.access.tokens import same_secret
from server.storage import keys
from server.storage.batcher import Batcher
from server.storage.values import text


def _key(host: str) -> str:
    return f"{keys.tag(host)}:feed"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class CalendarFeeds:
    def __init__(self, batch: Batcher) -> None:
        self.batch = batch

    async def rotate(self, host: str) -> str:
        """A new secret for the host's feed; the previous one no longer opens it."""
        secret = secrets.token_urlsafe(24)
        await self.batch.call("SET", _key(host), _digest(secret))
        return secret

    async def opens(self, host: str, secret: str) -> bool:
        stored = text(await self.batch.call("GET", _key(host)))
        return bool(stored) and bool(secret) and same_secret(_digest(secret), stored)
