"""Health and drain (issue 10, point 10): ``/healthz`` says the process is
alive, ``/readyz`` whether it should get traffic; SIGTERM drains: ``/readyz``
goes 503 at once, new sockets are refused with HTTP 503, open sockets are
closed with 1012 so clients resume elsewhere (a guest keeps its place), and
the process exits within ``FOYER_DRAIN_TIMEOUT``. Real processes, real signals."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from foyer_client import GuestClient, HostClient, JoinRequest
from protocol.codec import JSON
from protocol.errors import CloseCode
from protocol.messages import GuestAway, GuestBack
from tests.support import FoyerProcess, spawn_foyer, valkey_server

DRAIN = 8.0  # FOYER_DRAIN_TIMEOUT of the drained process
PAUSE = 3.0  # seconds Redis holds writes while it drains
EXIT_SLACK = 2.0  # signal delivery and interpreter exit on a loaded machine


def test_healthz_and_readyz(foyer: FoyerProcess) -> None:
    assert httpx.get(f"{foyer.http_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{foyer.http_url}/readyz").json() == {"status": "ready"}


def test_readyz_503_when_redis_is_gone_healthz_stays_200() -> None:
    """/healthz used to ping Redis (test_api checked its 503); it is liveness
    now (a restart would not bring Redis back), and /readyz carries the check."""
    with valkey_server() as server, spawn_foyer(server.url) as proc:
        assert httpx.get(f"{proc.http_url}/readyz").status_code == 200
        server.stop()
        r = httpx.get(f"{proc.http_url}/readyz", timeout=30)
        assert r.status_code == 503 and r.json()["code"] == "unavailable"
        assert httpx.get(f"{proc.http_url}/healthz", timeout=30).status_code == 200


def _pause_writes(redis_url: str, seconds: float) -> None:
    """Hold every write on Redis for ``seconds`` (it lifts by itself): the
    drained process's clean-up (guests marked away) waits, so the drain lasts
    long enough to be seen from outside."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "WRITE")
    finally:
        client.close()


async def test_sigterm_drains_and_guests_resume_elsewhere() -> None:
    with valkey_server() as server:
        drained = FoyerProcess(server.url, {"FOYER_DRAIN_TIMEOUT": str(DRAIN)}).start()
        shared = {"FOYER_SECRET": drained.secret, "FOYER_API_KEY": drained.api_key}
        try:
            with spawn_foyer(server.url, shared) as other:
                await _drain(drained, other, server.url)
        finally:
            drained.stop(signal.SIGKILL)


async def _drain(drained: FoyerProcess, other: FoyerProcess, redis_url: str) -> None:
    host = drained.create_host("Drained Host")
    async with (
        HostClient(other.ws_url, host["token"]) as watcher,
        HostClient(drained.ws_url, host["token"]) as device,
        GuestClient(drained.ws_url, host["slug"], name="Moved") as guest,
        httpx.AsyncClient(base_url=drained.http_url, timeout=5) as http,
    ):
        gid = guest.waiting.guest
        assert (await watcher.wait_for(JoinRequest)).guest["id"] == gid
        assert (await http.get("/readyz")).status_code == 200

        assert drained.process is not None
        process = drained.process
        _pause_writes(redis_url, PAUSE)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)

        # Open sockets are closed with 1012 (service restart) at once ...
        assert await guest.wait_closed(timeout=10) == CloseCode.SERVICE_RESTART
        assert await device.wait_closed(timeout=10) == CloseCode.SERVICE_RESTART
        # ... and while it drains it is not ready and refuses new sockets.
        r = await http.get("/readyz")
        assert r.status_code == 503 and r.json() == {"code": "unavailable", "message": "draining"}
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{drained.ws_url}/ws/host", subprotocols=[JSON])  # type: ignore[list-item]
        assert refused.value.response.status_code == 503
        assert time.monotonic() - sent < PAUSE, "the checks above must run while it drains"

        # The guest kept its place: away, then back on the other process.
        assert (await watcher.wait_for(GuestAway, timeout=PAUSE + 10)).guest == gid
        async with GuestClient(other.ws_url, host["slug"], resume=guest.waiting.resume) as back:
            assert back.waiting.guest == gid and back.waiting.position == 1
            assert (await watcher.wait_for(GuestBack)).guest == gid

        # The process exits within FOYER_DRAIN_TIMEOUT.
        process.wait(timeout=DRAIN + EXIT_SLACK + 10)
        took = time.monotonic() - sent
        assert took <= DRAIN + EXIT_SLACK, f"exited {took:.1f} s after SIGTERM"


async def test_sigterm_exits_within_the_drain_timeout_when_redis_hangs() -> None:
    """Clean-up that cannot finish (Redis holds every write for longer than the
    drain) does not keep the process: it exits within FOYER_DRAIN_TIMEOUT."""
    with valkey_server() as server:
        drained = FoyerProcess(server.url, {"FOYER_DRAIN_TIMEOUT": "3"}).start()
        try:
            host = drained.create_host("Hung")
            async with GuestClient(drained.ws_url, host["slug"], name="Stuck") as guest:
                assert drained.process is not None
                _pause_writes(server.url, 60)
                sent = time.monotonic()
                drained.process.send_signal(signal.SIGTERM)
                assert await guest.wait_closed(timeout=10) == CloseCode.SERVICE_RESTART
                drained.process.wait(timeout=3 + EXIT_SLACK + 10)
                took = time.monotonic() - sent
                assert took <= 3 + EXIT_SLACK, f"exited {took:.1f} s after SIGTERM"
        finally:
            drained.stop(signal.SIGKILL)
