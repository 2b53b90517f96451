"""Foyer's asyncio client for hosts and guests (used by tests and load tests).

async with HostClient(url, token) as host:          # msgpack by default
    jr = await host.wait_for("join_request")
    await host.admit(jr.guest["id"])

async with GuestClient(url, "ada-lovelace", name="Ann") as guest:
    outcome = await guest.wait_for("admitted", "busy", "denied")
"""

from foyer_client.client import ClientError, GuestClient, HostClient

__all__ = ["ClientError", "GuestClient", "HostClient"]
