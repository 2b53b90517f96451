"""A subscribe that fails while Redis is down must not poison the host: once
Redis is back, the next hello and the next knock for that host on that process
work at once (issue 10, point 2)."""

from __future__ import annotations

import pytest

from foyer_client import Admitted, FoyerError, GuestClient, HostClient, JoinRequest
from server.ops.embedded import EmbeddedValkey
from tests.support import spawn_foyer


async def test_a_subscribe_that_failed_in_an_outage_leaves_no_trace(
    valkey: EmbeddedValkey,
) -> None:
    env = {"FOYER_SUBSCRIBE_TIMEOUT": "2"}
    with spawn_foyer(valkey.url, env) as proc:
        host = proc.create_host("Outage Host")  # nobody follows it on this process yet
        valkey.stop()
        with pytest.raises((FoyerError, OSError)):
            async with HostClient(proc.ws_url, host["token"]):
                pass
        with pytest.raises((FoyerError, OSError)):
            async with GuestClient(proc.ws_url, host["slug"], name="During"):
                pass
        valkey.start()
        # At once: no retry loop here.
        async with HostClient(proc.ws_url, host["token"]) as device:
            async with GuestClient(proc.ws_url, host["slug"], name="After") as guest:
                knock = await device.wait_for(JoinRequest)
                assert knock.guest["id"] == guest.waiting.guest
                await device.admit(guest.waiting.guest)
                assert (await guest.wait_for(Admitted)).type == "admitted"
