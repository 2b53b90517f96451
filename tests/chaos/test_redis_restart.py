"""Redis restarts (SIGTERM) or crashes (kill -9, append-only data) while guests
wait and knocks stream: Foyer comes back at once and completely."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from foyer_client import HostClient
from server.ops.embedded import EmbeddedValkey
from tests.chaos.harness import (
    DeviceView,
    KnockStream,
    assert_knock_and_reply_work,
    assert_no_guest_lost,
    assert_views_match,
)
from tests.support import spawn_foyer

STREAM = 80


def _down(valkey: EmbeddedValkey, sig: int) -> None:
    proc = valkey.process
    assert proc is not None
    proc.send_signal(sig)
    proc.wait(timeout=15)
    valkey.process = None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
async def test_redis_restart_while_knocks_stream(valkey: EmbeddedValkey, sig: int) -> None:
    with spawn_foyer(valkey.url) as a:
        env = {"FOYER_SECRET": a.secret, "FOYER_API_KEY": a.api_key}
        with spawn_foyer(valkey.url, env) as b:
            host = a.create_host("Chaos Host")
            async with (
                HostClient(a.ws_url, host["token"]) as d1,
                HostClient(a.ws_url, host["token"]) as d2,
                HostClient(b.ws_url, host["token"]) as d3,
            ):
                views = [DeviceView(d) for d in (d1, d2, d3)]
                stream = KnockStream(b.ws_url, host["slug"], STREAM).start()
                try:
                    await stream.wait_attempts(STREAM // 4)
                    _down(valkey, sig)
                    await stream.wait_failures(1)  # knocks meet the outage
                    valkey.start()
                    # Right after Redis is back, every concurrent read answers.
                    async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as http:
                        replies = await asyncio.gather(
                            *(http.get(f"/api/links/{host['slug']}") for _ in range(20))
                        )
                    assert [r.status_code for r in replies] == [200] * 20
                    await stream.finish()
                    queue = await assert_views_match(views, valkey.url, host["id"])
                    assert_no_guest_lost(stream, queue)
                    await assert_knock_and_reply_work(b.ws_url, host["slug"], views)
                finally:
                    await stream.close()
