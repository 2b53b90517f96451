"""The Store on the suite's real Valkey: schedules lose nothing, a dropped
guest always expires, counters always get their TTL, hosts appear whole."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from protocol import events
from protocol.errors import HostExists
from protocol.lobby import GuestState, LobbyEvent
from server.storage import keys
from server.storage import store as store_module
from server.storage.store import KnockVerdict
from server.storage.values import now_ms
from tests.server.storage.conftest import Stores


async def _knock_result(
    stores: Stores,
    host: str,
    guest: str,
    *,
    address: str = "1.2.3.4",
    address_limit: int = 30,
    options: dict[str, Any] | None = None,
    rules: store_module.Lobby | None = None,
) -> store_module.KnockResult:
    return await stores.store.knock(
        host,
        guest,
        {"id": guest, "name": "G", "options": options or {}},
        resume=f"{guest}~s",
        conn="c1",
        email="",
        verified=False,
        link_limit=0,
        address=address,
        address_limit=address_limit,
        rules=rules,
    )


async def _knock(stores: Stores, host: str, guest: str, **settings: Any) -> KnockVerdict:
    return (await _knock_result(stores, host, guest, **settings)).verdict


async def _new_host(stores: Stores) -> str:
    host = "st-" + uuid.uuid4().hex[:10]
    await stores.hosts.create_host(host, "Ada", None)
    return host


async def _knocked(stores: Stores, guest: str = "g1", address: str = "1.2.3.4") -> str:
    host = await _new_host(stores)
    assert await _knock(stores, host, guest, address=address) is KnockVerdict.OK
    return host


async def test_a_dropped_guest_is_scheduled_to_expire_at_its_deadline(stores: Stores) -> None:
    host = await _knocked(stores)
    step = await stores.store.disconnect(host, "g1", "c1", window_ms=30_000)
    assert step.ok and step.state == GuestState.AWAY
    score = await stores.redis.zscore(keys.EXPIRY, f"{host}\ng1")
    deadline = await stores.redis.hget(keys.guest(host, "g1"), "deadline")
    assert score is not None and deadline is not None and int(score) == int(deadline)


async def test_a_stale_disconnect_still_leaves_no_guest_behind(stores: Stores) -> None:
    """Even a disconnect that loses (another socket took over) leaves its entry:
    harmless, the expire guard checks state and deadline."""
    host = await _knocked(stores)
    step = await stores.store.disconnect(host, "g1", "another-socket", window_ms=30_000)
    assert not step.ok
    await stores.redis.zadd(keys.EXPIRY, {f"{host}\ng1": now_ms() - 1})
    await stores.store.expire_due()
    assert await stores.redis.hget(keys.guest(host, "g1"), "state") == b"waiting"
    assert await stores.redis.zscore(keys.EXPIRY, f"{host}\ng1") is None


async def test_a_claimed_entry_comes_back_when_its_claimer_dies(stores: Stores) -> None:
    host = await _knocked(stores)
    await stores.store.disconnect(host, "g1", "c1", window_ms=0)
    claimed = await stores.store._claim(keys.EXPIRY, retry_ms=100)  # a process that then died
    assert (f"{host}\ng1") in [member for member, _ in claimed]
    await stores.store.expire_due()  # claimed by the dead process: not taken again yet
    assert await stores.redis.hget(keys.guest(host, "g1"), "state") == b"away"
    await asyncio.sleep(0.15)  # the claim's own lifetime, not a guess at a race
    await stores.store.expire_due()
    assert await stores.redis.hget(keys.guest(host, "g1"), "state") == b"expired"
    assert await stores.redis.zscore(keys.EXPIRY, f"{host}\ng1") is None


async def test_an_error_mid_sweep_loses_no_other_entry(stores: Stores) -> None:
    good = await _knocked(stores)
    await stores.store.disconnect(good, "g1", "c1", window_ms=0)
    bad_host = "st-bad-" + uuid.uuid4().hex[:6]
    await stores.redis.set(f"{keys.tag(bad_host)}:q", "not a zset")  # the script will fail
    await stores.redis.hset(keys.guest(bad_host, "gb"), mapping={"state": "away", "deadline": 1})
    await stores.redis.zadd(keys.EXPIRY, {f"{bad_host}\ngb": 1})
    await stores.store.expire_due()
    assert await stores.redis.hget(keys.guest(good, "g1"), "state") == b"expired"
    member = f"{bad_host}\ngb"
    assert await stores.redis.zscore(keys.EXPIRY, member) is not None  # kept, will retry
    await stores.redis.zrem(keys.EXPIRY, member)


async def test_the_per_address_counter_always_has_a_ttl(stores: Stores) -> None:
    host = await _knocked(stores, address="9.9.9.9")
    found = [k async for k in stores.redis.scan_iter(f"{keys.tag(host)}:rl:ip:9.9.9.9:*")]
    assert len(found) == 1
    assert 0 < await stores.redis.pttl(found[0]) <= 61_000


async def test_the_per_address_limit_refuses_the_knock_over_it(stores: Stores) -> None:
    host = await _knocked(stores, address="8.8.8.8")
    results = [await _knock(stores, host, f"x{i}", address="8.8.8.8") for i in range(31)]
    assert results.count(KnockVerdict.RATE_LIMITED) == 2  # the 31st and 32nd knock
    assert results[-1] is KnockVerdict.RATE_LIMITED


async def test_create_host_is_atomic_and_one_creator_wins(stores: Stores) -> None:
    host = "st-race-" + uuid.uuid4().hex[:6]
    outcomes = await asyncio.gather(
        *(stores.hosts.create_host(host, "Race", None) for _ in range(8)), return_exceptions=True
    )
    winners = [o for o in outcomes if isinstance(o, dict)]
    assert len(winners) == 1
    assert all(isinstance(o, HostExists) for o in outcomes if not isinstance(o, dict))
    fields = await stores.redis.hgetall(keys.host(host))
    assert {b"id", b"name", b"slug", b"room", b"settings", b"locked", b"bypass"} <= set(fields)
    slugs = [k async for k in stores.redis.scan_iter("foyer:slug:race*")]
    owned = [k for k in slugs if await stores.redis.get(k) == host.encode()]
    assert len(owned) == 1  # the winner's; every loser released the slug it claimed


async def test_admit_all_goes_in_slices_bounded_by_who_waited_when_it_began(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slices of two: five guests take three steps, and a guest who knocks after
    the bulk answer began (a higher score) is not swept up by a later slice."""
    monkeypatch.setattr(store_module, "BULK_SLICE", 2)
    host = await _knocked(stores)
    for gid in ("g2", "g3", "g4", "g5"):
        assert await _knock(stores, host, gid, address_limit=0) is KnockVerdict.OK
    original = stores.store._ring_outbox
    late: list[str] = []

    def knock_meanwhile(h: str) -> None:  # runs after each slice is queued
        original(h)
        if not late:
            late.append("g6")
            asyncio.get_running_loop().create_task(_knock(stores, host, "g6", address_limit=0))

    monkeypatch.setattr(stores.store, "_ring_outbox", knock_meanwhile)
    template = {"type": "denied"}
    assert await stores.store.transition_all(host, LobbyEvent.DENY, template, ()) == 5
    snapshot = await stores.store.snapshot(host)
    assert [g["id"] for g in snapshot.queue] == ["g6"]


async def test_admit_all_is_one_script_with_each_guests_options(stores: Stores) -> None:
    host = await _knocked(stores)
    own = {"title": "Own title", "duration": 45}
    assert await _knock(stores, host, "g2", address_limit=0, options=own) is KnockVerdict.OK
    template = {
        "type": "admitted",
        "mode": "admit",
        "meeting": {"id": "room", "url": "https://m/room", "title": "Meeting", "duration": 30},
    }
    moved = await stores.store.transition_all(host, LobbyEvent.ADMIT, template, ("title",))
    assert moved == 2
    snapshot = await stores.store.snapshot(host, ["g1", "g2"])
    assert snapshot.queue == []
    second = snapshot.known["g2"].outcome
    assert second is not None and second["meeting"]["title"] == "Own title"
    assert second["meeting"]["duration"] == 30  # not copied: only "title" was asked for


async def test_a_host_written_before_the_policy_sets_is_migrated_on_its_first_knock(
    stores: Stores,
) -> None:
    """Hosts kept by an older Foyer have the policy only in the settings JSON."""
    host = "st-old-" + uuid.uuid4().hex[:6]
    settings = {"policy": {"bypass": "nobody", "locked": False, "block": ["Spam.Example"]}}
    await stores.redis.hset(
        keys.host(host), mapping={"id": host, "name": "Old", "settings": json.dumps(settings)}
    )
    result = await stores.store.knock(
        host,
        "g1",
        {"id": "g1", "name": "G", "options": {}},
        resume="g1~s",
        conn="c1",
        email="eve@spam.example",
        verified=False,
        link_limit=0,
        address="1.1.1.1",
        address_limit=0,
    )
    assert result.verdict is KnockVerdict.BLOCKED
    assert await stores.redis.smembers(f"{keys.tag(host)}:block") == {b"spam.example"}
    assert await stores.redis.hget(keys.host(host), "policy_v") == b"1"


async def test_a_knock_publishes_an_event_whose_kind_reads_cheaply(stores: Stores) -> None:
    """A process of guests skips decoding knocks by their kind (``events.kind_of``):
    that holds only if what ``knock.lua`` packs starts with the kind."""
    host = await _new_host(stores)
    pubsub = stores.redis.pubsub()
    await pubsub.subscribe(keys.knock_channel(host))
    await pubsub.get_message(timeout=2)  # the subscribe confirmation
    assert await _knock(stores, host, "g1") is KnockVerdict.OK
    message = await pubsub.get_message(timeout=2, ignore_subscribe_messages=True)
    await pubsub.aclose()
    assert message is not None
    assert events.kind_of(message["data"]) == events.Knocked.KIND
    assert isinstance(events.decode(message["data"]), events.Knocked)


async def test_the_raid_window_counts_only_its_own_knocks_and_sheds_old_ones(
    stores: Stores,
) -> None:
    """Knocks older than the window never count, and never pile up."""
    host = await _new_host(stores)
    recent = f"{keys.tag(host)}:knocks"
    old = now_ms() - 61_000
    await stores.redis.zadd(recent, {f"old{i}": old for i in range(50)})
    rules = store_module.Lobby(raid_threshold=3)
    for i in range(3):
        result = await _knock_result(stores, host, f"g{i}", address_limit=0, rules=rules)
        assert result.verdict is KnockVerdict.OK and not result.raid_started
    result = await _knock_result(stores, host, "g3", address_limit=0, rules=rules)
    assert result.raid_started  # the fourth of the window, whatever lies before it
    for i in range(4, 120):
        await _knock_result(stores, host, f"g{i}", address_limit=0, rules=rules)
    assert await stores.redis.zcount(recent, "-inf", old) == 0  # shed on the way
    assert await stores.redis.zcard(recent) == 120


async def test_a_lapsed_deny_cool_down_refuses_nothing_and_is_trimmed(
    stores: Stores,
) -> None:
    host = await _new_host(stores)
    denied = f"{keys.tag(host)}:denied"
    await stores.redis.zadd(denied, {"a:1.2.3.4": now_ms() - 1, "a:9.9.9.9": now_ms() - 1})
    rules = store_module.Lobby(identity="a:1.2.3.4", deny_cooldown_ms=60_000)
    first = await _knock_result(stores, host, "g1", address_limit=0, rules=rules)
    assert first.verdict is KnockVerdict.OK
    (step,) = await stores.store.transition(host, LobbyEvent.DENY, [("g1", b"\x80")])
    assert step.ok
    assert await stores.redis.zrange(denied, 0, -1) == [b"a:1.2.3.4"]  # the lapsed ones went
    second = await _knock_result(stores, host, "g2", address_limit=0, rules=rules)
    assert second.verdict is KnockVerdict.COOLING


async def _heard(stores: Stores, host: str, guest: str) -> tuple[bool, bool]:
    """Whether a knock by ``guest`` was heard on (the knocks channel, the events channel)."""
    pubsub = stores.redis.pubsub()
    await pubsub.subscribe(keys.knock_channel(host), keys.channel(host))
    for _ in range(2):
        await pubsub.get_message(timeout=2)  # the subscribe confirmations
    assert await _knock(stores, host, guest) is KnockVerdict.OK
    heard: set[bytes] = set()
    while message := await pubsub.get_message(timeout=0.5, ignore_subscribe_messages=True):
        if events.kind_of(message["data"]) == events.Knocked.KIND:
            heard.add(message["channel"])
    await pubsub.aclose()
    return keys.knock_channel(host).encode() in heard, keys.channel(host).encode() in heard


async def test_knocks_go_on_their_own_channel_which_only_device_processes_follow(
    stores: Stores,
) -> None:
    """A process of guests follows the events channel only: it is never sent a knock."""
    host = await _new_host(stores)
    assert await _heard(stores, host, "g1") == (True, False)  # no device online
    stores.store.device_up(host, "d1")  # as a device of this version registers
    assert await _heard(stores, host, "g2") == (True, False)
    await stores.store.device_down(host, "d1")
    assert await stores.redis.zcard(f"{keys.tag(host)}:devices") == 0  # the same member


async def test_a_device_of_an_older_foyer_still_hears_every_knock(stores: Stores) -> None:
    """A rolling upgrade: a device on a process from before the knocks channel
    registered itself without the marker and follows only the events channel;
    while it is online, knocks go there."""
    host = await _new_host(stores)
    stores.store.device_up(host, "new")
    devices = f"{keys.tag(host)}:devices"
    await stores.redis.zadd(devices, {"old": now_ms() + 60_000})  # an older Foyer's ZADD
    assert await _heard(stores, host, "g1") == (False, True)
    await stores.redis.zrem(devices, "old")  # its process was upgraded
    assert await _heard(stores, host, "g2") == (True, False)
    await stores.redis.zadd(devices, {"old": now_ms() - 1})  # a lease that lapsed
    assert await _heard(stores, host, "g3") == (True, False)
