"""Webhooks (issue 12, point 1): signed with Standard Webhooks, delivered at
least once from each host's outbox, to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from foyer_client import GuestClient, HostClient
from protocol.messages import Admitted, JoinRequest
from server.access.targets import RefusedTarget, check_target
from server.notify.webhooks import WebhookConfig
from server.storage import keys
from tests.receiver import SECRET, WAIT, Receiver, receiving, reserved_port
from tests.support import FoyerProcess, spawn_foyer, valkey_server


def hook_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return url_env(receiver.url, **extra)


def url_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "FOYER_WEBHOOK_URL": url,
        "FOYER_WEBHOOK_SECRET": SECRET,
        "FOYER_WEBHOOK_ALLOW": "127.0.0.1",
        "FOYER_WEBHOOK_POLL": "0.1",
        "FOYER_WEBHOOK_BACKOFF": "0.2",
        "FOYER_WEBHOOK_BACKOFF_MAX": "0.5",
        "FOYER_WEBHOOK_TIMEOUT": "5",
        **extra,
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture(scope="module")
def hooked(redis_url: str, receiver: Receiver) -> Iterator[FoyerProcess]:
    with spawn_foyer(redis_url, hook_env(receiver)) as proc:
        yield proc


async def test_a_knock_and_an_admit_are_delivered_signed(
    hooked: FoyerProcess, receiver: Receiver
) -> None:
    receiver.answer = lambda e: (200, {})
    host = hooked.create_host("Hooked Ada")
    async with (
        HostClient(hooked.ws_url, host["token"]) as device,
        GuestClient(hooked.ws_url, host["slug"], name="Ann") as guest,
    ):
        await device.wait_for(JoinRequest)
        await device.admit(guest.waiting.guest)
        admitted = await guest.wait_for(Admitted)
    await receiver.until(lambda: len(receiver.delivered(host["id"])) >= 2)
    got = {d.event["type"]: d for d in receiver.delivered(host["id"]).values()}
    assert sorted(got) == ["guest.knocked", "guest.resolved"]
    for delivery in got.values():
        verified = Webhook(SECRET).verify(delivery.body, delivery.headers)
        assert verified == delivery.event
        assert delivery.headers["webhook-signature"].startswith("v1,")
        with pytest.raises(WebhookVerificationError):  # another secret does not verify
            Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).verify(
                delivery.body, delivery.headers
            )
    knocked = got["guest.knocked"].event
    assert set(knocked) == {"type", "timestamp", "data"}
    assert knocked["data"]["guest"] == guest.waiting.guest
    assert knocked["data"]["card"]["name"] == "Ann" and knocked["data"]["position"] == 1
    resolved = got["guest.resolved"].event["data"]
    assert resolved["guest"] == guest.waiting.guest and resolved["action"] == "admit"
    assert resolved["meeting"] == admitted.meeting
    # Which one answered: a device (its connection id), not the API or an email.
    assert resolved["by"] == "device" and len(resolved["device"]) == 16


async def test_a_receiver_failing_for_a_while_gets_every_event_once(
    hooked: FoyerProcess, receiver: Receiver
) -> None:
    host = hooked.create_host("Flaky Receiver")
    failures = {"left": 6}
    lock = threading.Lock()

    def answer(event: dict[str, Any]) -> tuple[int, dict[str, str]]:
        if event["data"]["host"] != host["id"]:
            return 200, {}
        with lock:
            failures["left"] -= 1
            left = failures["left"]
        if left >= 3:
            return 503, {"retry-after": "1"}
        return (500, {}) if left >= 0 else (200, {})

    receiver.answer = answer
    async with (
        HostClient(hooked.ws_url, host["token"]) as device,
        GuestClient(hooked.ws_url, host["slug"], name="One") as one,
        GuestClient(hooked.ws_url, host["slug"], name="Two") as two,
    ):
        await device.presence("away")
        await one.cancel()
        await two.cancel()
        await receiver.until(lambda: failures["left"] < 0)
        await receiver.until(lambda: len(receiver.delivered(host["id"])) >= 5)
    events = [d.event for d in receiver.delivered(host["id"]).values()]
    kinds = sorted(e["type"] for e in events)
    assert kinds == ["guest.knocked", "guest.knocked", "guest.left", "guest.left", "host.presence"]
    left = {e["data"]["guest"]: e["data"]["reason"] for e in events if e["type"] == "guest.left"}
    assert set(left) == {one.waiting.guest, two.waiting.guest}
    assert next(e for e in events if e["type"] == "host.presence")["data"]["state"] == "away"
    attempts = receiver.of(host["id"])
    assert any(d.status == 503 for d in attempts) and any(d.status == 500 for d in attempts)
    # Every failed attempt was retried under the same id, and delivered.
    assert {d.id for d in attempts} == set(receiver.delivered(host["id"]))


async def test_a_dropped_guest_is_away_then_back(hooked: FoyerProcess, receiver: Receiver) -> None:
    receiver.answer = lambda e: (200, {})
    host = hooked.create_host("Dropping")
    first = GuestClient(hooked.ws_url, host["slug"], name="Ann")
    await first.__aenter__()
    gid, resume = first.waiting.guest, first.waiting.resume
    await first.close()  # the connection drops
    await receiver.until(lambda: "guest.away" in receiver.types(host["id"]))
    async with GuestClient(hooked.ws_url, host["slug"], resume=resume) as back:
        assert back.waiting.guest == gid
        await receiver.until(lambda: "guest.back" in receiver.types(host["id"]))
        await back.cancel()
    await receiver.until(lambda: "guest.left" in receiver.types(host["id"]))
    events = sorted(
        (d.event for d in receiver.delivered(host["id"]).values()), key=lambda e: e["timestamp"]
    )
    assert {e["data"]["guest"] for e in events} == {gid}
    assert sorted(e["type"] for e in events) == [
        "guest.away",
        "guest.back",
        "guest.knocked",
        "guest.left",
    ]


async def test_a_hold_is_a_webhook_with_who_held(hooked: FoyerProcess, receiver: Receiver) -> None:
    receiver.answer = lambda e: (200, {})
    host = hooked.create_host("Holding")
    async with (
        HostClient(hooked.ws_url, host["token"]) as device,
        GuestClient(hooked.ws_url, host["slug"], name="Ann") as ann,
    ):
        await device.hold(ann.waiting.guest, "In a call", estimate_s=300)
        await receiver.until(lambda: "guest.held" in receiver.types(host["id"]))
    (held,) = [
        d.event["data"]
        for d in receiver.delivered(host["id"]).values()
        if d.event["type"] == "guest.held"
    ]
    assert held["guest"] == ann.waiting.guest
    assert held["held"]["message"] == "In a call" and held["held"]["estimate_s"] == 300
    assert held["by"] == "device" and len(held["device"]) == 16


@pytest.fixture
def own_redis() -> Iterator[str]:
    """A Valkey of the test's own: every webhook process on one Redis shares its
    outboxes (one deployment, one endpoint), so the module's ``hooked`` process
    must not take these tests' deliveries."""
    with valkey_server() as server:
        yield server.url


async def test_a_process_killed_mid_delivery_loses_nothing(
    own_redis: str, receiver: Receiver
) -> None:
    redis_url = own_redis
    receiver.hold.clear()
    host_box: dict[str, str] = {}
    receiver.answer = lambda e: (0, {}) if e["data"]["host"] == host_box.get("id") else (200, {})
    env = hook_env(receiver, FOYER_WEBHOOK_CLAIM="2")
    first = FoyerProcess(redis_url, env).start()
    try:
        host = first.create_host("Crashing")
        host_box["id"] = host["id"]
        guest = GuestClient(first.ws_url, host["slug"], name="Kept")
        await guest.__aenter__()
        # The knock's delivery is in flight, held by the receiver: kill -9 now.
        await receiver.until(lambda: any(d.status == 0 for d in receiver.of(host["id"])))
        held = next(d for d in receiver.of(host["id"]) if d.status == 0)
        first.stop(signal.SIGKILL)
        with contextlib.suppress(Exception):
            await guest.__aexit__(None, None, None)
    finally:
        first.stop(signal.SIGKILL)
    receiver.answer = lambda e: (200, {})
    receiver.hold.set()
    with spawn_foyer(redis_url, env):
        await receiver.until(
            lambda: any(d.id == held.id for d in receiver.delivered(host["id"]).values())
        )
    again = receiver.delivered(host["id"])[held.id]
    assert again.event == held.event and again.event["type"] == "guest.knocked"
    Webhook(SECRET).verify(again.body, again.headers)


async def _dead_letters(
    redis_url: str, host: str, count: int, endpoint: str = "deployment"
) -> list[dict[str, Any]]:
    """The host's dead-letter list once it holds ``count`` (bounded: fails the test)."""
    redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(WAIT):
            while True:
                raw = await redis.lrange(keys.dead_letters(endpoint), 0, -1)
                mine = [m for m in map(msgpack.unpackb, raw) if m["host"] == host]
                if len(mine) >= count:
                    return mine
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"no {count} dead letters for {host}") from None
    finally:
        await redis.aclose()


async def test_the_last_retry_dead_letters_and_410_disables_the_endpoint(own_redis: str) -> None:
    redis_url = own_redis
    with receiving() as receiver:
        hosts: dict[str, str] = {}

        def answer(event: dict[str, Any]) -> tuple[int, dict[str, str]]:
            return (410, {}) if event["data"]["host"] == hosts.get("gone") else (500, {})

        receiver.answer = answer
        env = hook_env(receiver, FOYER_WEBHOOK_ATTEMPTS="2")
        with spawn_foyer(redis_url, env) as proc:
            failing = proc.create_host("Failing")
            async with GuestClient(proc.ws_url, failing["slug"], name="Lost") as guest:
                (dead,) = await _dead_letters(redis_url, failing["id"], 1)
                assert dead["attempts"] == 2 and dead["last"] == "500"
                assert dead["event"]["data"]["guest"] == guest.waiting.guest
                tries = receiver.of(failing["id"])
                assert [d.status for d in tries] == [500, 500]
                assert {d.id for d in tries} == {dead["id"]}
                await guest.cancel()

            gone = proc.create_host("Gone")
            hosts["gone"] = gone["id"]
            async with GuestClient(proc.ws_url, gone["slug"], name="First") as first:
                await receiver.until(lambda: len(receiver.of(gone["id"])) == 1)
                await first.cancel()  # a second event, after the 410
                letters = await _dead_letters(redis_url, gone["id"], 2)
            assert {d["last"] for d in letters} == {"gone"}
            assert [d.status for d in receiver.of(gone["id"])] == [410]  # never POSTed again


async def test_a_private_target_needs_allow_listing() -> None:
    closed = WebhookConfig(url="http://10.1.2.3/hook", secret=SECRET)
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/x", "ftp://x/"):
        with pytest.raises(RefusedTarget):
            await check_target(url, closed)
    opened = WebhookConfig(url="http://10.1.2.3/hook", secret=SECRET, allow=("10.0.0.0/8",))
    await check_target("http://10.1.2.3/hook", opened)
    with pytest.raises(RefusedTarget):
        await check_target("http://192.168.0.1/hook", opened)


def test_a_process_with_a_private_target_does_not_start(redis_url: str) -> None:
    env = {"FOYER_WEBHOOK_URL": "http://127.0.0.1:9/hook", "FOYER_WEBHOOK_SECRET": SECRET}
    proc = FoyerProcess(redis_url, env)
    with pytest.raises(RuntimeError, match="exited early"):
        proc.start()
    assert "FOYER_WEBHOOK_ALLOW" in proc.log()


async def test_a_receiver_down_for_a_minute_then_up_gets_every_event_once(
    own_redis: str,
) -> None:
    """Nothing listens on the endpoint's port for a full minute while guests
    knock and leave; then the receiver starts there and gets every event, each
    webhook-id standing for one event."""
    with reserved_port() as (port, release):
        url = f"http://127.0.0.1:{port}/hook"
        env = {
            **url_env(url),
            "FOYER_WEBHOOK_BACKOFF": "1",
            "FOYER_WEBHOOK_BACKOFF_MAX": "8",
            "FOYER_WEBHOOK_ATTEMPTS": "100",
        }
        with spawn_foyer(own_redis, env) as proc:
            host = proc.create_host("Patient Ada")
            guests: list[str] = []
            down_until = time.monotonic() + 60
            async with HostClient(proc.ws_url, host["token"]) as device:
                while time.monotonic() < down_until - 5 and len(guests) < 12:  # bounded
                    async with GuestClient(proc.ws_url, host["slug"], name="G") as guest:
                        guests.append(guest.waiting.guest)
                        await device.wait_for(JoinRequest)
                        if len(guests) % 2:
                            await device.admit(guest.waiting.guest)
                            await guest.wait_for(Admitted)
                        else:
                            await guest.cancel()
                    await asyncio.sleep(4)  # spread the events over the outage
                await asyncio.sleep(max(0.0, down_until - time.monotonic()))
                release()  # nothing listened until now; the receiver takes the port
                with receiving(port) as receiver:
                    expected = {(g, "guest.knocked") for g in guests}
                    expected |= {
                        (g, "guest.resolved" if i % 2 == 0 else "guest.left")
                        for i, g in enumerate(guests)
                    }

                    def seen() -> set[tuple[str, str]]:
                        return {
                            (d.event["data"]["guest"], d.event["type"])
                            for d in receiver.delivered(host["id"]).values()
                        }

                    await receiver.until(lambda: expected <= seen())
                    by_id = receiver.delivered(host["id"])
                    pairs = [(d.event["data"]["guest"], d.event["type"]) for d in by_id.values()]
                    assert sorted(pairs) == sorted(expected)  # one id per event, none missing
                    for delivery in by_id.values():
                        Webhook(SECRET).verify(delivery.body, delivery.headers)
        assert len(guests) >= 8
