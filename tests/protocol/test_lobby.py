from __future__ import annotations

import pytest

from protocol.errors import InvalidTransition
from protocol.lobby import (
    EXPIRES_FROM,
    FINAL,
    GUARDS,
    INITIAL,
    LEFT_REASON,
    OUTCOME_FOR_REPLY,
    QUEUED,
    TRANSITIONS,
    GuestState,
    LobbyEvent,
    Outcome,
    lua_constants,
    next_state,
    reply_for_outcome,
)


def test_replies_from_queue() -> None:
    for state in QUEUED:
        assert next_state(state, LobbyEvent.ADMIT) is GuestState.ADMITTED
        assert next_state(state, LobbyEvent.DENY) is GuestState.DENIED


def test_final_states_accept_nothing() -> None:
    for state in FINAL:
        for event in LobbyEvent:
            with pytest.raises(InvalidTransition, match=f"can't handle {event} when {state}"):
                next_state(state, event)


def test_only_away_expires_and_resumes_back() -> None:
    assert next_state(GuestState.AWAY, LobbyEvent.EXPIRE) is GuestState.EXPIRED
    assert next_state(GuestState.AWAY, LobbyEvent.RESUME) is GuestState.WAITING
    with pytest.raises(InvalidTransition):
        next_state(GuestState.WAITING, LobbyEvent.EXPIRE)


def test_reply_for_outcome_inverts_outcome_for_reply() -> None:
    for event, outcome in OUTCOME_FOR_REPLY.items():
        mode = event.value if outcome is Outcome.ADMITTED else None
        assert reply_for_outcome(outcome.value, mode) is event
    with pytest.raises(InvalidTransition):
        reply_for_outcome("admitted", "deny")
    with pytest.raises(InvalidTransition):
        reply_for_outcome("waiting")


def test_every_guarded_event_is_in_the_table() -> None:
    for event in GUARDS:
        assert any((state, event) in TRANSITIONS for state in GuestState)


def test_only_the_expiring_state_expires() -> None:
    expiring = {state for (state, event) in TRANSITIONS if event is LobbyEvent.EXPIRE}
    assert expiring == {EXPIRES_FROM}
    assert INITIAL in QUEUED
    assert set(LEFT_REASON) <= FINAL


def test_lua_constants_are_deterministic_literals() -> None:
    first, second = lua_constants(), lua_constants()
    assert first == second
    assert first["__INITIAL__"] == '"waiting"'
    assert '["away"]={' in first["__TRANSITIONS__"]


def test_hold_is_an_attribute_of_a_queued_state() -> None:
    """A held guest keeps its state and its place: any reply can still win."""
    for state in QUEUED:
        assert next_state(state, LobbyEvent.HOLD) is state
        assert next_state(next_state(state, LobbyEvent.HOLD), LobbyEvent.ADMIT) is (
            GuestState.ADMITTED
        )
    assert LobbyEvent.HOLD not in OUTCOME_FOR_REPLY  # not a final reply


def test_a_maximum_wait_ends_a_queued_wait_with_its_own_reason() -> None:
    for state in QUEUED:
        assert next_state(state, LobbyEvent.TIME_OUT) is GuestState.TIMED_OUT
    assert GuestState.TIMED_OUT in FINAL
    assert LEFT_REASON[GuestState.TIMED_OUT].value == "timed_out"
    assert GUARDS[LobbyEvent.TIME_OUT] is GUARDS[LobbyEvent.EXPIRE]  # not_due
