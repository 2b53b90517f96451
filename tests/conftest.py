"""Session-wide real servers: one Valkey (or ``FOYER_TEST_REDIS_URL``) and
Foyer processes on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import FoyerProcess, spawn_foyer, valkey_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("FOYER_TEST_REDIS_URL")
    if external:
        yield external
        return
    with valkey_server() as server:
        yield server.url


@pytest.fixture(scope="session")
def foyer(redis_url: str) -> Iterator[FoyerProcess]:
    with spawn_foyer(redis_url) as proc:
        yield proc


@pytest.fixture(scope="session")
def foyer2(foyer: FoyerProcess, redis_url: str) -> Iterator[FoyerProcess]:
    """A second process on the same Redis and secrets: the two act as one."""
    env = {"FOYER_SECRET": foyer.secret, "FOYER_API_KEY": foyer.api_key}
    with spawn_foyer(redis_url, env) as proc:
        yield proc


@pytest.fixture
def host(foyer: FoyerProcess) -> dict[str, Any]:
    """A fresh host (id, slug, token) for one test."""
    return foyer.create_host("Ada Lovelace")
