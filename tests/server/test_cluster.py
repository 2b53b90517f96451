"""On a real Valkey Cluster: hash-tagged keys, Lua per slot, sharded pub/sub.

Two Foyer processes on a three-primary cluster run the knock path, the
exactly-one-reply race, settings and expiry, with hosts spread over slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from foyer_client import GuestClient, HostClient, Locked
from protocol.messages import Admitted, GuestLeft, HostMessage, JoinRequest
from tests.support import FoyerProcess, ValkeyCluster, spawn_foyer, try_reply


@pytest.fixture(scope="module")
def cluster() -> Iterator[ValkeyCluster]:
    with ValkeyCluster() as c:
        yield c


@pytest.fixture(scope="module")
def pair(cluster: ValkeyCluster) -> Iterator[tuple[FoyerProcess, FoyerProcess]]:
    env = {"FOYER_RESUME_WINDOW": "1"}
    with spawn_foyer(cluster.url, env) as a:
        env_b = {**env, "FOYER_SECRET": a.secret, "FOYER_API_KEY": a.api_key}
        with spawn_foyer(cluster.url, env_b) as b:
            yield a, b


def test_cluster_is_real(cluster: ValkeyCluster) -> None:
    client = redis.Redis(host="127.0.0.1", port=cluster.ports[0])
    try:
        assert client.info("cluster")["cluster_enabled"] == 1
        assert len(client.execute_command("CLUSTER", "NODES").splitlines()) == 3
    finally:
        client.close()


async def test_knock_path_across_processes_and_slots(
    pair: tuple[FoyerProcess, FoyerProcess],
) -> None:
    a, b = pair
    hosts = [a.create_host(f"Cluster Host {i}") for i in range(6)]  # several slots
    for host in hosts:
        async with (
            HostClient(a.ws_url, host["token"]) as device,
            GuestClient(b.ws_url, host["slug"], name="Shard Guest") as guest,
        ):
            jr = await device.wait_for(JoinRequest)
            assert jr.guest["id"] == guest.waiting.guest
            await device.message(guest.waiting.guest, "hello across the cluster")
            assert (await guest.wait_for(HostMessage)).type == "message"
            await device.admit(guest.waiting.guest)
            assert (await guest.wait_for(Admitted)).type == "admitted"


async def test_one_reply_wins_on_cluster(pair: tuple[FoyerProcess, FoyerProcess]) -> None:
    a, b = pair
    host = a.create_host("Race On Cluster")

    async with HostClient(a.ws_url, host["token"]) as d1, HostClient(b.ws_url, host["token"]) as d2:
        for _ in range(5):
            async with GuestClient(b.ws_url, host["slug"], name="Racer") as guest:
                results = await asyncio.gather(
                    try_reply(d1, "admit", guest.waiting.guest),
                    try_reply(d2, "busy", guest.waiting.guest),
                )
                assert sorted(results) == [False, True]


async def test_settings_policy_and_expiry_on_cluster(
    pair: tuple[FoyerProcess, FoyerProcess],
) -> None:
    a, b = pair
    host = a.create_host("Settings On Cluster")
    async with HostClient(a.ws_url, host["token"]) as device:
        await device.settings(policy={"locked": True})
        with pytest.raises(Locked) as err:
            async with GuestClient(b.ws_url, host["slug"], name="Locked Out"):
                pass
        assert err.value.close_code == 4423
        await device.settings(policy={"locked": False})
        guest = GuestClient(b.ws_url, host["slug"], name="Dropper")
        await guest.__aenter__()
        await guest.close()
        left = await device.wait_for(GuestLeft, timeout=15)
        assert left.reason == "expired"


@pytest.fixture
def own_cluster() -> Iterator[ValkeyCluster]:
    """A cluster no other Foyer process uses. The module's ``pair`` is still running
    while the webhook test runs. Without ``FOYER_WEBHOOK_ALLOW`` and without the
    deployment endpoint, it would claim some of the test's outboxes (it learns the
    registered endpoint from the registry). Then it fails to reach 127.0.0.1 and
    backs off: a host's webhooks did not arrive within 30 s in 2 of 5 full runs,
    and in every run when ``pair`` polled every 20 ms."""
    with ValkeyCluster() as c:
        yield c


async def test_webhooks_are_delivered_from_outboxes_on_every_slot(
    own_cluster: ValkeyCluster,
) -> None:
    from tests.server.notify.test_webhooks import SECRET, Webhook, hook_env, receiving

    cluster = own_cluster
    with (
        receiving() as receiver,
        receiving() as registered,
        spawn_foyer(cluster.url, hook_env(receiver)) as proc,
        proc.api() as api,
    ):
        made = api.post("/api/webhooks", json={"url": registered.url, "events": ["guest.left"]})
        assert made.status_code == 201, made.text
        endpoint = made.json()
        hosts = [proc.create_host(f"Hooked Cluster Host {i}") for i in range(4)]  # several slots
        for host in hosts:
            async with GuestClient(proc.ws_url, host["slug"], name="Shard Guest") as guest:
                await guest.cancel()
        for host in hosts:
            await receiver.until(lambda h=host["id"]: len(receiver.delivered(h)) >= 2)
            assert receiver.types(host["id"]) == ["guest.knocked", "guest.left"]
            for delivery in receiver.delivered(host["id"]).values():
                Webhook(SECRET).verify(delivery.body, delivery.headers)
            await registered.until(lambda h=host["id"]: len(registered.delivered(h)) >= 1)
            assert registered.types(host["id"]) == ["guest.left"]
            for delivery in registered.delivered(host["id"]).values():
                Webhook(endpoint["secret"]).verify(delivery.body, delivery.headers)
        log = api.get(f"/api/webhooks/{endpoint['id']}/deliveries").json()
        done = [a["host"] for a in log["attempts"] if a["result"] == "delivered"]
        assert done and set(done) <= {h["id"] for h in hosts}  # the log, read across slots
