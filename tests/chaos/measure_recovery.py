"""Figures for docs/operations-failure.md: Redis is restarted (SIGTERM, or
kill -9 with append-only data) ROUNDS times while knocks stream through two
Foyer processes; for each restart, the time from Redis accepting connections
again to the first knock that a device on the other process is shown, the 5xx
among 20 concurrent ``GET /api/links/{slug}`` sent at that moment, and the
guests lost (told ``waiting`` yet missing from the store or from a device).

    .venv/bin/python -m tests.chaos.measure_recovery [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

from foyer_client import GuestClient, HostClient
from server.ops.embedded import EmbeddedValkey
from tests.chaos.harness import DeviceView, KnockStream, assert_views_match, store_queue
from tests.support import spawn_foyer


async def one_round(valkey: EmbeddedValkey, sig: int) -> tuple[float, int, int, int]:
    level = {"FOYER_LOG_LEVEL": "info"} if os.environ.get("CHAOS_LOGS") else {}
    with spawn_foyer(valkey.url, level) as a:
        env = {"FOYER_SECRET": a.secret, "FOYER_API_KEY": a.api_key, **level}
        with spawn_foyer(valkey.url, env) as b:
            host = a.create_host("Measured Host")
            async with HostClient(a.ws_url, host["token"]) as device:
                view = DeviceView(device)
                stream = KnockStream(b.ws_url, host["slug"], 200).start()
                await stream.wait_attempts(50)
                assert valkey.process is not None
                valkey.process.send_signal(sig)
                valkey.process.wait(timeout=15)
                valkey.process = None
                await stream.wait_failures(1)
                valkey.start()
                back = time.monotonic()
                async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as http:
                    replies = await asyncio.gather(
                        *(http.get(f"/api/links/{host['slug']}") for _ in range(20))
                    )
                errors = sum(r.status_code >= 500 for r in replies)
                async with GuestClient(b.ws_url, host["slug"], name="Probe") as probe:
                    while probe.waiting.guest not in view.waiting:
                        await view.next(1.0)
                recovered = time.monotonic() - back
                await stream.finish()
                try:
                    queue = await assert_views_match([view], valkey.url, host["id"])
                except AssertionError:
                    import redis

                    r = redis.Redis.from_url(valkey.url)
                    from server.storage import keys

                    ours = {g.waiting.guest for g in stream.guests}
                    for gid in store_queue(valkey.url, host["id"]) - view.waiting:
                        print("MISSING", gid, gid in ours, r.hgetall(keys.guest(host["id"], gid)))
                    print("EV", r.get(f"{keys.tag(host['id'])}:ev"), "failures", stream.failures)
                    if os.environ.get("CHAOS_LOGS"):
                        print("A:", a.log(), "\nB:", b.log())
                    raise
                lost = sum(g.waiting.guest not in queue for g in stream.connected())
                await stream.close()
                return recovered, errors, lost, len(stream.guests)


async def main(rounds: int) -> None:
    for name, sig in (("SIGTERM", signal.SIGTERM), ("kill -9", signal.SIGKILL)):
        for i in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                valkey = EmbeddedValkey(Path(tmp), persist=True)
                valkey.start()
                try:
                    took, errors, lost, waited = await one_round(valkey, sig)
                finally:
                    valkey.stop()
            print(
                f"{name} round {i + 1}: knock shown {took * 1000:.0f} ms after Redis was back; "
                f"5xx {errors}/20; guests waiting {waited}, lost {lost}"
            )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
