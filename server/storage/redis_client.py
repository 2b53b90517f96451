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
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a redis-py 8 client gets by default, and what a pool built by hand does not:
# retries on connection and timeout errors, exponential backoff with full jitter
# (so processes that lost Redis together do not come back in lockstep). 10 tries
# from 50 ms, capped at 0.5 s: a few seconds in all, the time a socket waits for its
# subscription (FOYER_SUBSCRIBE_TIMEOUT), then the error reaches the caller.
RETRIES = 10
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 0.5


def retry_policy() -> Retry:
    """A fresh policy (a ``Retry`` keeps backoff state: one per connection)."""
    return Retry(
        ExponentialWithJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S),
        RETRIES,
        (RedisConnectionError, RedisTimeoutError),
    )


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
    connection, which does not use this policy for what it sent (``batcher.py``
    decides what may be sent twice). Every connection retries with backoff: a
    stale connection after a Redis restart costs a retry, not an error."""
    if cluster:
        client = RedisCluster.from_url(
            url, max_connections=pool_size, socket_keepalive=True, retry=retry_policy()
        )
        return cast(Redis, client)  # same command surface as Redis for what Foyer uses
    # TCP keep-alive is a TCP option: a unix:// socket's connection class refuses it.
    tcp = {} if url.startswith("unix:") else {"socket_keepalive": True}
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=10,
        health_check_interval=30,
        retry=retry_policy(),
        **tcp,
    )
    return Redis.from_pool(pool)  # owns the pool: ``aclose`` closes its connections
