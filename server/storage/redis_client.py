"""Open the Redis client Foyer runs on: standalone or Cluster.

Cluster is detected once at start-up (``INFO cluster``) unless
``FOYER_REDIS_CLUSTER`` says; on a cluster Foyer uses sharded pub/sub
(``SPUBLISH``/``SSUBSCRIBE``), and every key of a host shares the hash tag
``{h:<host>}`` so its Lua scripts and its channel live on one slot.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster


def is_cluster(url: str) -> bool:
    """Ask the server once; a server that does not answer counts as standalone
    (``/healthz`` reports it)."""
    with contextlib.suppress(redis.RedisError, OSError):
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            info: dict[str, Any] = client.info("cluster")
            return bool(info.get("cluster_enabled"))
        finally:
            client.close()
    return False


def open_redis(url: str, cluster: bool, pool_size: int = 50) -> Redis:
    """An asyncio client; pools wait for a free connection instead of raising.
    The pool serves pub/sub and start-up; the hot path has the Batcher's own
    connection."""
    if cluster:
        client = RedisCluster.from_url(url, max_connections=pool_size, socket_keepalive=True)
        return cast(Redis, client)  # same command surface as Redis for what Foyer uses
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=10,
        health_check_interval=30,
        socket_keepalive=True,
    )
    return Redis.from_pool(pool)  # owns the pool: ``aclose`` closes its connections
