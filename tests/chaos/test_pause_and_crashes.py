"""Redis paused during a burst; a Foyer process killed -9 holding guests,
another holding host devices; two devices on two processes racing replies.
After each: no guest lost, every device's view equals the store, and the next
knock and reply work without restarting anything."""

from __future__ import annotations

import asyncio
import signal

import redis

from foyer_client import GuestClient, HostClient
from server.ops.embedded import EmbeddedValkey
from tests.chaos.harness import (
    DeviceView,
    KnockStream,
    assert_knock_and_reply_work,
    assert_no_guest_lost,
    assert_views_match,
    store_queue,
)
from tests.support import spawn_foyer, try_reply


async def test_redis_paused_during_a_burst(valkey: EmbeddedValkey) -> None:
    with spawn_foyer(valkey.url) as a:
        env = {"FOYER_SECRET": a.secret, "FOYER_API_KEY": a.api_key}
        with spawn_foyer(valkey.url, env) as b:
            host = a.create_host("Paused Host")
            async with HostClient(a.ws_url, host["token"]) as d1:
                views = [DeviceView(d1)]
                stream = KnockStream(b.ws_url, host["slug"], 40, concurrency=8).start()
                admin = redis.Redis.from_url(valkey.url)
                try:
                    await stream.wait_attempts(8)
                    admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
                    await stream.finish()
                    queue = await assert_views_match(views, valkey.url, host["id"])
                    assert_no_guest_lost(stream, queue)
                    assert not views[0].extra
                    await assert_knock_and_reply_work(b.ws_url, host["slug"], views)
                finally:
                    admin.execute_command("CLIENT", "UNPAUSE")
                    admin.close()
                    await stream.close()


async def test_a_process_holding_guests_is_killed(valkey: EmbeddedValkey) -> None:
    env = {"FOYER_LEASE": "2", "FOYER_RESUME_WINDOW": "60"}
    with spawn_foyer(valkey.url, env) as a:
        env |= {"FOYER_SECRET": a.secret, "FOYER_API_KEY": a.api_key}
        host = a.create_host("Crash Host")
        async with HostClient(a.ws_url, host["token"]) as device:
            view = DeviceView(device)
            with spawn_foyer(valkey.url, env) as b:
                stream = KnockStream(b.ws_url, host["slug"], 12).start()
                await stream.finish()
                resumes = [g.waiting.resume for g in stream.connected()]
                queue = await assert_views_match([view], valkey.url, host["id"])
                assert_no_guest_lost(stream, queue)
                b.stop(signal.SIGKILL)
                await stream.close()
            # Their places are kept: each guest resumes on the surviving process.
            for secret in resumes:
                async with GuestClient(a.ws_url, host["slug"], resume=secret) as back:
                    assert back.waiting.guest in store_queue(valkey.url, host["id"])
            await assert_views_match([view], valkey.url, host["id"])
            await assert_knock_and_reply_work(a.ws_url, host["slug"], [view])


async def test_a_process_holding_devices_is_killed(valkey: EmbeddedValkey) -> None:
    with spawn_foyer(valkey.url) as b:
        env = {"FOYER_SECRET": b.secret, "FOYER_API_KEY": b.api_key}
        host = b.create_host("Device Crash Host")
        stream = KnockStream(b.ws_url, host["slug"], 10).start()
        try:
            with spawn_foyer(valkey.url, env) as a:
                async with HostClient(a.ws_url, host["token"]):
                    await stream.wait_attempts(5)
                    a.stop(signal.SIGKILL)
            await stream.finish()
            with spawn_foyer(valkey.url, env) as c:  # the host's devices come back elsewhere
                async with HostClient(c.ws_url, host["token"]) as device:
                    view = DeviceView(device)
                    queue = await assert_views_match([view], valkey.url, host["id"])
                    assert_no_guest_lost(stream, queue)
                    assert len(queue) == 10
                    await assert_knock_and_reply_work(b.ws_url, host["slug"], [view])
        finally:
            await stream.close()


async def test_two_devices_on_two_processes_race_replies(valkey: EmbeddedValkey) -> None:
    with spawn_foyer(valkey.url) as a:
        env = {"FOYER_SECRET": a.secret, "FOYER_API_KEY": a.api_key}
        with spawn_foyer(valkey.url, env) as b:
            host = a.create_host("Race Host")
            async with (
                HostClient(a.ws_url, host["token"]) as d1,
                HostClient(b.ws_url, host["token"]) as d2,
            ):
                views = [DeviceView(d1), DeviceView(d2)]
                stream = KnockStream(b.ws_url, host["slug"], 12).start()
                try:
                    await stream.finish()
                    await assert_views_match(views, valkey.url, host["id"])
                    actions = ["admit", "busy", "deny", "new_meeting"]
                    for i, guest in enumerate(stream.connected()):
                        gid = guest.waiting.guest
                        wins = await asyncio.gather(
                            try_reply(d1, actions[i % 4], gid),
                            try_reply(d2, actions[(i + 1) % 4], gid),
                        )
                        assert sorted(wins) == [False, True], wins
                    queue = await assert_views_match(views, valkey.url, host["id"])
                    assert queue == set()
                    await assert_knock_and_reply_work(b.ws_url, host["slug"], views)
                finally:
                    await stream.close()
