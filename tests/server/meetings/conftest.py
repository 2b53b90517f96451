"""A Batcher on the suite's real Valkey for the meetings stores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.storage import scripts
from server.storage.batcher import Batcher


@pytest.fixture
async def batch(redis_url: str) -> AsyncIterator[Batcher]:
    redis = Redis.from_url(redis_url)
    batcher = Batcher(redis, scripts.load())
    await batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop()
        await redis.aclose()
