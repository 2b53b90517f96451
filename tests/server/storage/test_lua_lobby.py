"""The Lua scripts obey protocol/lobby.py: every (state, event) pair goes
through the real ``transition.lua`` on the suite's Valkey, with ``next_state``
as the oracle; every guard refuses with its verdict and changes nothing; and
every doorbell event the scripts publish decodes with ``protocol.events``."""

from __future__ import annotations

import itertools
import re
import uuid

import pytest
from redis.asyncio import Redis

from protocol import events, lobby
from protocol.errors import InvalidTransition
from protocol.lobby import GuestState, LobbyEvent, Verdict
from server.storage import keys, scripts
from server.storage.values import now_ms, pack
from tests.server.storage.conftest import Stores

SECRET = "g1~secret"
CONN = "c1"
MEETING = "m1"
OUTCOME = {"type": "admitted", "mode": "admit", "meeting": {"id": "r", "url": "https://x/r"}}


async def _guest_in(redis: Redis, state: GuestState, *, deadline_ms: int) -> tuple[str, str]:
    """A fresh host with one guest ``g1`` in ``state``; the host is in a meeting."""
    host = "lua-" + uuid.uuid4().hex[:10]
    t = keys.tag(host)
    info = {"id": "g1", "name": "G", "options": {}}
    await redis.hset(
        keys.guest(host, "g1"),
        mapping={
            "state": state.value,
            "conn": CONN,
            "resume": SECRET,
            "score": 1,
            "info": pack(info),
            "deadline": deadline_ms,
            "wait_until": deadline_ms,  # the maximum wait (time_out's guard)
            "outcome": pack(OUTCOME),
        },
    )
    if state in lobby.QUEUED:
        await redis.zadd(f"{t}:q", {"g1": 1})
    await redis.hset(f"{t}:presence", mapping={"state": "in_meeting", "meeting_id": MEETING})
    return host, "g1"


async def _state(redis: Redis, host: str) -> str:
    raw = await redis.hget(keys.guest(host, "g1"), "state")
    return raw.decode() if raw else ""


PAIRS = list(itertools.product(GuestState, LobbyEvent))


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s}-{e}" for s, e in PAIRS])
async def test_every_pair_follows_the_table(
    stores: Stores, state: GuestState, event: LobbyEvent
) -> None:
    redis, store = stores.redis, stores.store
    host, guest = await _guest_in(redis, state, deadline_ms=now_ms() - 1000)  # guards all pass
    (step,) = await store.transition(
        host,
        event,
        [(guest, pack(OUTCOME))],
        conn=CONN,
        resume=SECRET,
        merge_id=MEETING,
    )
    try:
        expected = lobby.next_state(state, event)
    except InvalidTransition:
        want = Verdict.ALREADY_RESOLVED if state in lobby.FINAL else Verdict.INVALID
        assert step.verdict is want
        assert await _state(redis, host) == state.value
        return
    assert step.verdict is Verdict.OK, step
    assert step.state == expected.value
    assert await _state(redis, host) == expected.value
    queued = await redis.zscore(f"{keys.tag(host)}:q", guest) is not None
    assert queued == (expected in lobby.QUEUED)


GUARDED = [
    (LobbyEvent.RESUME, {"resume": "g1~wrong"}),
    (LobbyEvent.DISCONNECT, {"conn": "another-socket"}),
    (LobbyEvent.MERGE, {"merge_id": "another-meeting"}),
    (LobbyEvent.EXPIRE, {}),  # the deadline is in the future
    (LobbyEvent.TIME_OUT, {}),  # the maximum wait is in the future
]


@pytest.mark.parametrize(("event", "broken"), GUARDED, ids=[e for e, _ in GUARDED])
async def test_a_failed_guard_answers_its_verdict_and_changes_nothing(
    stores: Stores, event: LobbyEvent, broken: dict[str, str]
) -> None:
    redis, store = stores.redis, stores.store
    # a state from which the table allows ``event``: only the guard can refuse it
    state = next(s for s in GuestState if (s, event) in lobby.TRANSITIONS)
    host, guest = await _guest_in(redis, state, deadline_ms=now_ms() + 60_000)
    args = {"conn": CONN, "resume": SECRET, "merge_id": MEETING, **broken}
    (step,) = await store.transition(host, event, [(guest, pack(OUTCOME))], **args)
    assert step.verdict is lobby.GUARDS[event]
    assert await _state(redis, host) == state.value


async def test_an_unknown_guest_is_unknown(stores: Stores) -> None:
    (step,) = await stores.store.transition("lua-nobody", LobbyEvent.ADMIT, [("gx", b"")])
    assert step.verdict is Verdict.UNKNOWN_GUEST


async def test_published_events_decode_to_their_types(stores: Stores) -> None:
    redis, store = stores.redis, stores.store
    host, guest = await _guest_in(redis, GuestState.WAITING, deadline_ms=0)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.channel(host))
    await pubsub.get_message(timeout=2)  # the subscribe confirmation
    await store.transition(host, LobbyEvent.DISCONNECT, [(guest, b"")], conn=CONN)
    await store.transition(host, LobbyEvent.RESUME, [(guest, b"")], conn="c2", resume=SECRET)
    await store.set_presence(host, "available", None)
    await store.say(host, guest, "one moment")
    await store.transition(host, LobbyEvent.ADMIT, [(guest, pack(OUTCOME))])
    seen: list[events.Event] = []
    while len(seen) < 5:
        message = await pubsub.get_message(timeout=2, ignore_subscribe_messages=True)
        assert message is not None, seen
        seen.append(events.decode(message["data"]))
        assert events.kind_of(message["data"]) == seen[-1].KIND  # what Lua packs, read cheaply
    await pubsub.aclose()
    assert [type(e) for e in seen] == [
        events.WentAway,
        events.Resumed,
        events.PresenceSet,
        events.Said,
        events.Resolved,
    ]
    resolved = seen[-1]
    assert isinstance(resolved, events.Resolved)
    assert resolved.outcome == OUTCOME and resolved.action == "admit" and resolved.ev >= 1


def test_every_placeholder_is_rendered() -> None:
    for name, source in scripts.load().items():
        assert "__" not in source.replace("__index", ""), name


def test_constant_members_are_rendered_as_strings_and_no_table_is_built_per_call() -> None:
    loaded = scripts.load()
    for name, source in loaded.items():
        assert re.search(r"\b[EVKH]\.[A-Za-z_]", source) is None, name
        assert re.search(r"local [EVKH, ]+=", source) is None, name
    assert 'if event == "merge" then' in loaded["transition"]
    assert 'cmsgpack.pack("knock", ev' in loaded["knock"]
    with pytest.raises(KeyError, match=r"no constant E\.NOPE"):
        scripts.render("return E.NOPE", {})
    assert scripts.render("return V.OK, K.Knocked, H.KNOCKED", {}) == (
        'return "ok", "knock", "guest.knocked"'
    )


LOOKUP_PROBE = (
    "__LOOKUPS__\nlocal s, e = ARGV[1], ARGV[2]\n"
    "return {step(s, e) or '', final(s) and 1 or 0, queued(s) and 1 or 0, left(s) or ''}"
)


async def test_the_rendered_lookups_agree_with_the_table_on_every_pair(stores: Stores) -> None:
    """``step``, ``final``, ``queued`` and ``left`` (the lifecycle's tables as
    Lua functions, so no script builds a table per call) run on Valkey and
    answer what protocol/lobby.py says, for every state and event."""
    probe = scripts.render(LOOKUP_PROBE, lobby.lua_constants())
    for state, event in PAIRS:
        got = await stores.redis.eval(probe, 0, state.value, event.value)
        try:
            expected_step = lobby.next_state(state, event).value
        except InvalidTransition:
            expected_step = ""
        reason = lobby.LEFT_REASON.get(state)
        assert got == [
            expected_step.encode(),
            int(state in lobby.FINAL),
            int(state in lobby.QUEUED),
            reason.value.encode() if reason else b"",
        ], (state, event)


def test_no_script_builds_a_table_of_the_lifecycle_per_call() -> None:
    loaded = scripts.load()
    for name in ("transition", "say"):
        assert '["' not in loaded[name], name  # a table literal with string keys


async def test_hold_and_time_out_publish_their_events(stores: Stores) -> None:
    """A hold keeps the state and publishes ``held``; a time-out with the line the
    knock stored publishes ``dismissed`` with it (and stores it for a late resume)."""
    redis, store = stores.redis, stores.store
    host, guest = await _guest_in(redis, GuestState.WAITING, deadline_ms=now_ms() - 1000)
    line = {"type": "timed_out", "message": "Another day"}
    await redis.hset(keys.guest(host, guest), lobby.TIMEOUT_FIELD, pack(line))
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.channel(host))
    await pubsub.get_message(timeout=2)
    (held,) = await store.transition(host, LobbyEvent.HOLD, [(guest, pack({"message": "Soon"}))])
    assert held.verdict is Verdict.OK and held.state == GuestState.WAITING
    # The hold answered the guest: its maximum wait is gone, so time_out is not due.
    (early,) = await store.transition(host, LobbyEvent.TIME_OUT, [(guest, b"")])
    assert early.verdict is Verdict.NOT_DUE
    await redis.hset(keys.guest(host, guest), "wait_until", now_ms() - 1)
    (out,) = await store.transition(host, LobbyEvent.TIME_OUT, [(guest, b"")])
    assert out.state == GuestState.TIMED_OUT
    seen = []
    for _ in range(2):
        message = await pubsub.get_message(timeout=2, ignore_subscribe_messages=True)
        assert message is not None
        seen.append(events.decode(message["data"]))
        assert events.kind_of(message["data"]) == seen[-1].KIND  # what Lua packs, read cheaply
    await pubsub.aclose()
    assert seen[0] == events.HeldSet(ev=0, guest=guest, held={"message": "Soon"})
    dismissed = seen[1]
    assert isinstance(dismissed, events.Dismissed)
    assert dismissed.reason == "timed_out" and dismissed.outcome == line
