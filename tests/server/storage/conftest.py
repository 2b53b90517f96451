"""A Store and a HostStore on the suite's real Valkey, through one Batcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from server.storage import scripts
from server.storage.batcher import Batcher
from server.storage.hosts import HostStore
from server.storage.store import Store


@dataclass
class Stores:
    redis: Redis
    store: Store
    hosts: HostStore


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[Stores]:
    redis = Redis.from_url(redis_url)
    batch = Batcher(redis, scripts.load())
    await batch.start()
    try:
        yield Stores(redis, Store(batch), HostStore(batch))
    finally:
        await batch.stop()
        await redis.aclose()
