"""Redis goes away and comes back: Foyer answers cleanly meanwhile and
recovers (scripts reloaded, pub/sub resubscribed), losing nothing stored."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import pytest

from foyer_client import ClientError, GuestClient, HostClient
from server.ops.embedded import EmbeddedValkey
from tests.support import spawn_foyer


async def test_restart_of_redis() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        valkey = EmbeddedValkey(Path(tmp), persist=True)
        valkey.start()
        try:
            with spawn_foyer(valkey.url) as proc:
                host = proc.create_host("Outage Host")
                async with HostClient(proc.ws_url, host["token"]) as device:
                    async with GuestClient(proc.ws_url, host["slug"], name="Before") as early:
                        await device.wait_for("join_request")
                        valkey.stop()
                        with pytest.raises(ClientError) as err:
                            async with GuestClient(proc.ws_url, host["slug"], name="During"):
                                pass
                        assert err.value.code == "internal" and err.value.close_code == 1011
                        assert "Traceback" not in err.value.message
                        valkey.start()
                        deadline = time.monotonic() + 20
                        while True:
                            try:
                                async with GuestClient(
                                    proc.ws_url, host["slug"], name="After"
                                ) as late:
                                    jr = await device.wait_for("join_request", timeout=5)
                                    assert getattr(jr, "guest")["name"] == "After"  # noqa: B009
                                    assert late.waiting.position == 2  # Before is still there
                                    break
                            except ClientError:
                                assert time.monotonic() < deadline
                                await asyncio.sleep(0.5)
                        await device.admit(early.waiting.guest)
                        assert (await early.wait_for("admitted")).type == "admitted"
        finally:
            valkey.stop()
