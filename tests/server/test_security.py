"""Origins, knock rate limits, trusted proxies, and secrets kept out of logs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from foyer_client import GuestClient, HostClient, RateLimited, Unauthorized
from tests.support import FoyerProcess, spawn_foyer


@pytest.fixture(scope="module")
def guarded(redis_url: str) -> Iterator[FoyerProcess]:
    env = {
        "FOYER_ALLOWED_ORIGINS": "https://partner.example, http://localhost:9999",
        "FOYER_KNOCK_LIMIT": "3",
        "FOYER_LINK_KNOCK_LIMIT": "5",
        "FOYER_TRUSTED_PROXIES": "127.0.0.1",
        "FOYER_LOG_LEVEL": "debug",
    }
    with spawn_foyer(redis_url, env) as proc:
        yield proc


async def test_foreign_origin_refused(guarded: FoyerProcess) -> None:
    host = guarded.create_host("Origin Host")
    url = f"{guarded.ws_url}/ws/guest/{host['slug']}"
    with pytest.raises(InvalidStatus) as err:
        await connect(url, origin="https://evil.example")  # type: ignore[arg-type]
    assert err.value.response.status_code == 403
    for origin in ("https://partner.example", "http://localhost:9999", guarded.http_url):
        ws = await connect(url, origin=origin)  # type: ignore[arg-type]
        await ws.close()
    ws = await connect(url)  # no Origin header: not a browser, passes
    await ws.close()


def _xff(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _knock(proc: FoyerProcess, slug: str, address: str) -> str:
    """``waiting``, or ``rate_limited`` when the knock was refused (and closed 4029)."""
    try:
        async with GuestClient(proc.ws_url, slug, name="Rate", headers=_xff(address)) as client:
            return client.waiting.type
    except RateLimited as exc:
        assert exc.close_code == 4029
        return exc.code.value


async def test_knock_limit_per_address_behind_trusted_proxy(guarded: FoyerProcess) -> None:
    host = guarded.create_host("Limit Host")
    results = [await _knock(guarded, host["slug"], "203.0.113.7") for _ in range(4)]
    assert results == ["waiting", "waiting", "waiting", "rate_limited"]
    # Another client address behind the same proxy has its own budget.
    assert await _knock(guarded, host["slug"], "203.0.113.8") == "waiting"


async def test_knock_limit_per_link(guarded: FoyerProcess) -> None:
    host = guarded.create_host("Busy Link")
    results = [await _knock(guarded, host["slug"], f"198.51.100.{i}") for i in range(6)]
    assert results == ["waiting"] * 5 + ["rate_limited"]


async def test_untrusted_peer_cannot_spoof_address(redis_url: str) -> None:
    with spawn_foyer(redis_url, {"FOYER_KNOCK_LIMIT": "2"}) as proc:
        host = proc.create_host("Spoof Host")
        results = [await _knock(proc, host["slug"], f"192.0.2.{i}") for i in range(3)]
        assert results == ["waiting", "waiting", "rate_limited"]


async def test_secrets_never_logged(guarded: FoyerProcess) -> None:
    host = guarded.create_host("Log Host")
    async with HostClient(guarded.ws_url, host["token"]) as device:
        await device.ping()
    with pytest.raises(Unauthorized):
        async with HostClient(guarded.ws_url, host["token"] + "x"):
            pass
    log = guarded.log()
    assert host["token"] not in log and guarded.api_key not in log
    assert guarded.secret not in log


def test_api_key_compared_in_constant_time() -> None:
    from server.access.tokens import same_secret

    assert same_secret("abc", "abc") and not same_secret("abd", "abc")
    assert not same_secret("", "abc")
