"""Measure the drain (not a test): SIGTERM to a ``foyer serve`` holding N
waiting guests; when all were closed with 1012, when another process's device
saw all of them ``away`` (resumable), when the process was gone.

    .venv/bin/python tests/server/ops/measure_drain.py 300
"""

import asyncio
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from foyer_client import GuestClient, HostClient
from protocol.messages import GuestAway
from tests.support import FoyerProcess, spawn_foyer, valkey_server

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300


async def main(url: str) -> None:
    p = FoyerProcess(url, {"FOYER_DRAIN_TIMEOUT": "10"}).start()
    with spawn_foyer(url, {"FOYER_SECRET": p.secret, "FOYER_API_KEY": p.api_key}) as q:
        h = p.create_host("M")
        async with HostClient(q.ws_url, h["token"]) as watcher:
            guests = [GuestClient(p.ws_url, h["slug"], name=f"g{i}") for i in range(N)]
            for i in range(0, N, 50):
                await asyncio.gather(*(g.__aenter__() for g in guests[i : i + 50]))
            t0 = time.monotonic()
            p.process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(g.wait_closed(timeout=20) for g in guests))
            t_closed = time.monotonic() - t0
            away = set()
            while len(away) < N:
                away.add((await watcher.wait_for(GuestAway, timeout=20)).guest)
            t_away = time.monotonic() - t0
            p.process.wait(timeout=30)
            t_exit = time.monotonic() - t0
            print(
                f"N={N} closed_1012={codes.count(1012)} all_closed={t_closed:.2f}s"
                f" all_away={t_away:.2f}s exit={t_exit:.2f}s"
            )
            for g in guests:
                await g.close()


with valkey_server() as s:
    asyncio.run(main(s.url))
