"""A host device that stops reading is dropped within a bounded time and counts
as offline (issue 10, fault 3): writes time out and the stuck transport is
aborted, instead of staying "online" with megabytes queued in the kernel."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support import FoyerProcess, spawn_foyer


@pytest.fixture(scope="module")
def impatient(redis_url: str) -> Iterator[FoyerProcess]:
    with spawn_foyer(redis_url, {"FOYER_WRITE_TIMEOUT": "1"}) as proc:
        yield proc


def _online(proc: FoyerProcess, slug: str) -> bool:
    return bool(httpx.get(f"{proc.http_url}/api/links/{slug}", timeout=5).json()["host_online"])


async def test_a_device_that_stops_reading_is_dropped_and_goes_offline(
    impatient: FoyerProcess,
) -> None:
    host = impatient.create_host("Slow Reader")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills fast
    sock.connect(("127.0.0.1", impatient.port))
    ws = await connect(
        f"{impatient.ws_url}/ws/host",
        sock=sock,
        subprotocols=["foyer.v1.json"],  # type: ignore[list-item]
    )
    try:
        await ws.send(json.dumps({"type": "hello", "token": host["token"]}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        assert _online(impatient, host["slug"])
        ws.transport.pause_reading()  # the device stops reading, and stays connected
        block = [f"blocked-{i:04d}@example.com" for i in range(400)]  # ~12 KB per settings frame
        # Well under the 40 s after which the WebSocket keepalive alone gives up.
        deadline = time.monotonic() + 20
        with impatient.api() as api:
            for i in range(2000):  # bounded: far more than any buffer on the way
                body = {"policy": {"block": block[i % 2 :]}}
                assert api.patch(f"/api/hosts/{host['id']}/settings", json=body).status_code == 200
                if i % 25 == 24 and not _online(impatient, host["slug"]):
                    break
                assert time.monotonic() < deadline
        while _online(impatient, host["slug"]):
            assert time.monotonic() < deadline, "the stuck device still counts as online"
            await asyncio.sleep(0.2)
    finally:
        ws.transport.abort()
    # The process is fine: a new device is welcomed at once.
    ws2 = await connect(f"{impatient.ws_url}/ws/host", subprotocols=["foyer.v1.json"])  # type: ignore[list-item]
    try:
        await ws2.send(json.dumps({"type": "hello", "token": host["token"]}))
        assert json.loads(await ws2.recv())["type"] == "welcome"
    finally:
        await ws2.close()
