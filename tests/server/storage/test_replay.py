"""A knock or a transition the Batcher sends twice (its reply was lost on the
link, so it cannot know whether it ran) is applied once: the second run answers
as the first did and publishes nothing."""

from __future__ import annotations

import uuid

from protocol.lobby import LobbyEvent, Verdict
from server.storage import keys
from server.storage.store import KnockVerdict, Step, _step
from server.storage.values import pack
from tests.server.storage.conftest import Stores


async def _host(stores: Stores) -> str:
    host = "rp-" + uuid.uuid4().hex[:10]
    await stores.hosts.create_host(host, "Ada", None)
    return host


def _knock_args(host: str, guest: str) -> tuple[list[str], list[object]]:
    t = keys.tag(host)
    return (
        [keys.host(host), f"{t}:q", keys.guest(host, guest), f"{t}:ev", f"{t}:presence",
         f"{t}:devices", f"{t}:rl:1", f"{t}:block", f"{t}:allow", f"{t}:rl:ip:a:1",
         f"{t}:block-unverified", f"{t}:denied", f"{t}:knocks", f"{t}:raid"],
        [guest, pack({"id": guest, "name": "G"}), f"{guest}~secret", 0, keys.channel(host),
         "PUBLISH", "c1", "", "", "0", 60_000, 0, 0, "", "a:1", 0, 0, "0", 0, pack({}),
         keys.knock_channel(host)],
    )  # fmt: skip


async def test_a_knock_sent_twice_is_one_knock(stores: Stores) -> None:
    host = await _host(stores)
    await _knock_args_run(stores, host, "g0")  # someone ahead
    keys_, args = _knock_args(host, "g1")
    first = await stores.store.batch.script("knock", keys_, args)
    counter = await stores.redis.get(f"{keys.tag(host)}:ev")
    again = await stores.store.batch.script("knock", keys_, args)
    assert [str(x, "utf-8") if isinstance(x, bytes) else x for x in again] == [
        str(x, "utf-8") if isinstance(x, bytes) else x for x in first
    ]
    assert first[1] == 2  # its place
    assert await stores.redis.get(f"{keys.tag(host)}:ev") == counter  # nothing published again
    assert await stores.redis.zcard(f"{keys.tag(host)}:q") == 2


async def _knock_args_run(stores: Stores, host: str, guest: str) -> None:
    keys_, args = _knock_args(host, guest)
    reply = await stores.store.batch.script("knock", keys_, args)
    assert KnockVerdict(reply[0].decode()) is KnockVerdict.OK


async def test_a_reply_sent_twice_wins_once_and_answers_ok_twice(stores: Stores) -> None:
    host = await _host(stores)
    await _knock_args_run(stores, host, "g1")
    outcome = pack({"type": "busy"})
    keys_, args = stores.store.transition_command(host, LobbyEvent.BUSY, [("g1", outcome)])
    first = _step((await stores.store.batch.script("transition", keys_, args))[0])
    counter = await stores.redis.get(f"{keys.tag(host)}:ev")
    again = _step((await stores.store.batch.script("transition", keys_, args))[0])
    assert first.ok and again.ok
    assert await stores.redis.get(f"{keys.tag(host)}:ev") == counter  # published once
    # Another device's reply (another operation) still loses.
    (other,) = await stores.store.transition(host, LobbyEvent.ADMIT, [("g1", pack({}))])
    assert other == Step(Verdict.ALREADY_RESOLVED, "busy", {"type": "busy"})


async def test_a_presence_sent_twice_appends_one_webhook(stores: Stores) -> None:
    host = await _host(stores)
    outbox = keys.outbox(host)
    args = ["in_meeting", pack({"id": "m1"}), "m1", keys.channel(host), "PUBLISH", outbox, "op1"]
    presence = [f"{keys.tag(host)}:presence"]
    assert await stores.store.batch.script("presence", presence, args) == b"ok"
    assert await stores.store.batch.script("presence", presence, args) == b"ok"
    assert await stores.redis.xlen(outbox) == 1
    # A new call (another operation) with the same state is a change of its own.
    await stores.store.batch.script("presence", presence, [*args[:-1], "op2"])
    assert await stores.redis.xlen(outbox) == 2
