"""Chaos fixtures: a Valkey of each test's own (faults must not reach the rest of
the suite) with append-only data, and two Foyer processes on it: ``a`` holds the
host devices, ``b`` the guests (every knock crosses Redis)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.ops.embedded import EmbeddedValkey


@pytest.fixture
def valkey() -> Iterator[EmbeddedValkey]:
    with tempfile.TemporaryDirectory(prefix="foyer-chaos-") as tmp:
        server = EmbeddedValkey(Path(tmp), persist=True)
        server.start()
        try:
            yield server
        finally:
            server.stop()
