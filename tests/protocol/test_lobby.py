from __future__ import annotations

import pytest

from protocol.errors import InvalidTransition
from protocol.lobby import FINAL, QUEUED, TRANSITIONS, GuestState, LobbyEvent, lua_table, next_state


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


def test_lua_table_holds_every_transition() -> None:
    table = lua_table()
    for (state, event), new in TRANSITIONS.items():
        assert f'["{event.value}"]="{new.value}"' in table
        assert f'["{state.value}"]=' in table
