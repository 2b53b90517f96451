"""Who is behind a slug, and a host's record, cached: a knock must not cost
extra round trips.

A slug never moves to another host (old slugs stay reserved to theirs), and a
cached record is dropped whenever this process starts to follow the host's
channel and on every settings event on it; policy is enforced by the knock
script itself. So a long life is safe.
"""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

from protocol.errors import UnknownLink
from server.storage.hosts import HostRecord, HostStore

SLUG_CACHE_S = 60.0
HOST_CACHE_S = 60.0
V = TypeVar("V")


class TtlCache(Generic[V]):
    """A small cache whose entries live ``ttl`` seconds; bounded (cleared when full)."""

    def __init__(self, ttl: float, limit: int = 50_000) -> None:
        self.ttl, self.limit = ttl, limit
        self._items: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: str, value: V) -> None:
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)


class Directory:
    """Slug -> host and host -> record, through a cache."""

    def __init__(self, hosts: HostStore) -> None:
        self._store = hosts
        self._records: TtlCache[HostRecord] = TtlCache(HOST_CACHE_S)
        self._slugs: TtlCache[str] = TtlCache(SLUG_CACHE_S)

    async def host_for_slug(self, slug: str) -> str:
        slug = slug.lower()
        host = self._slugs.get(slug)
        if host is None:
            host = await self._store.host_for_slug(slug) if len(slug) <= 64 else None
            if host is None:
                raise UnknownLink()
            self._slugs.put(slug, host)
        return host

    async def record(self, host: str) -> HostRecord:
        record = self._records.get(host)
        if record is None:
            record = await self._store.get_host(host)
            if record is None:
                raise UnknownLink()
            self._records.put(host, record)
        return record

    async def session(self, host: str, sid: str) -> dict[str, Any] | None:
        """A scheduled session on the host's link (not cached: rare, and short-lived)."""
        return await self._store.get_session(host, sid)

    def remember(self, record: HostRecord) -> None:
        """A record read elsewhere (a snapshot) is as good as one read here."""
        self._records.put(record["id"], record)

    def forget(self, host: str) -> None:
        self._records.drop(host)
