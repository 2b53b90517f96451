"""Per-address limits on what an anonymous client can repeat (issue 10, point 7):
the public link lookup and failed resumes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from foyer_client import GuestClient
from protocol.errors import RateLimited, UnknownGuest
from tests.support import FoyerProcess, spawn_foyer, valkey_server


@pytest.fixture(scope="module")
def limited() -> Iterator[FoyerProcess]:
    # A Valkey of its own: the counters are per address, and every test is 127.0.0.1.
    with (
        valkey_server() as valkey,
        spawn_foyer(valkey.url, {"FOYER_LINK_INFO_LIMIT": "5", "FOYER_RESUME_LIMIT": "3"}) as proc,
    ):
        yield proc


def test_the_public_link_lookup_is_limited_per_address(limited: FoyerProcess) -> None:
    host: dict[str, Any] = limited.create_host("Looked Up")
    url = f"{limited.http_url}/api/links/{host['slug']}"
    codes = [httpx.get(url, timeout=5).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5
    assert codes[5:] == [429, 429]
    body = httpx.get(url, timeout=5).json()
    assert body["code"] == "rate_limited"


async def test_failed_resumes_are_limited_per_address(limited: FoyerProcess) -> None:
    host: dict[str, Any] = limited.create_host("Resumed")
    for i in range(3):
        with pytest.raises(UnknownGuest):
            async with GuestClient(limited.ws_url, host["slug"], resume=f"g{i}~guess"):
                pass
    with pytest.raises(RateLimited) as refused:
        async with GuestClient(limited.ws_url, host["slug"], resume="g9~guess"):
            pass
    assert refused.value.close_code == 4029
