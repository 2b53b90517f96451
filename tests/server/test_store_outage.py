"""Redis goes away and comes back: Foyer answers cleanly meanwhile and
recovers (scripts reloaded, pub/sub resubscribed), losing nothing stored."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import pytest

from foyer_client import GuestClient, HostClient, InternalError, ProtocolError
from protocol.messages import Admitted, JoinRequest
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
                        await device.wait_for(JoinRequest)
                        valkey.stop()
                        with pytest.raises(InternalError) as err:
                            async with GuestClient(proc.ws_url, host["slug"], name="During"):
                                pass
                        assert err.value.close_code == 1011
                        assert "Traceback" not in err.value.message
                        valkey.start()
                        deadline = time.monotonic() + 20
                        while True:
                            try:
                                async with GuestClient(
                                    proc.ws_url, host["slug"], name="After"
                                ) as late:
                                    jr = await device.wait_for(JoinRequest, timeout=5)
                                    assert jr.guest["name"] == "After"
                                    assert late.waiting.position == 2  # Before is still there
                                    break
                            except ProtocolError:
                                assert time.monotonic() < deadline
                                await asyncio.sleep(0.5)
                        await device.admit(early.waiting.guest)
                        assert (await early.wait_for(Admitted)).type == "admitted"
        finally:
            valkey.stop()
