"""The lifecycle of a guest in a waiting room: the ONE transition table.

Everything that moves a guest from one state to another lives here, as in
h11's ``_state.py``. The server's Lua script reads this very table (it is
rendered into the script at start-up), so Redis enforces these rules
atomically and Python never does read-modify-write.
"""

from __future__ import annotations

from enum import StrEnum

from protocol.errors import InvalidTransition


class GuestState(StrEnum):
    WAITING = "waiting"  # connected and in the queue
    AWAY = "away"  # connection dropped; keeps its place for the resume window
    ADMITTED = "admitted"  # admit / merge / new_meeting
    BUSY = "busy"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class LobbyEvent(StrEnum):
    DISCONNECT = "disconnect"
    RESUME = "resume"
    ADMIT = "admit"
    MERGE = "merge"
    NEW_MEETING = "new_meeting"
    BUSY = "busy"
    DENY = "deny"
    CANCEL = "cancel"
    EXPIRE = "expire"


S, E = GuestState, LobbyEvent
_IN_QUEUE = (S.WAITING, S.AWAY)

TRANSITIONS: dict[tuple[GuestState, LobbyEvent], GuestState] = {
    (S.WAITING, E.DISCONNECT): S.AWAY,
    (S.AWAY, E.RESUME): S.WAITING,
    (S.WAITING, E.RESUME): S.WAITING,  # a new socket takes over a half-open one
    (S.AWAY, E.EXPIRE): S.EXPIRED,
    **{(state, E.ADMIT): S.ADMITTED for state in _IN_QUEUE},
    **{(state, E.MERGE): S.ADMITTED for state in _IN_QUEUE},
    **{(state, E.NEW_MEETING): S.ADMITTED for state in _IN_QUEUE},
    **{(state, E.BUSY): S.BUSY for state in _IN_QUEUE},
    **{(state, E.DENY): S.DENIED for state in _IN_QUEUE},
    **{(state, E.CANCEL): S.CANCELLED for state in _IN_QUEUE},
}

# States in which the guest is still in the host's queue.
QUEUED: frozenset[GuestState] = frozenset(_IN_QUEUE)
# Final states: the guest is out of the queue for good.
FINAL: frozenset[GuestState] = frozenset(set(GuestState) - QUEUED)

# How the host hears of a guest leaving the queue without a reply.
LEFT_REASON: dict[GuestState, str] = {
    S.CANCELLED: "cancelled",
    S.EXPIRED: "expired",
}


def next_state(state: GuestState, event: LobbyEvent) -> GuestState:
    """The state after ``event``, or ``InvalidTransition``."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"can't handle {event} when {state}") from None


def lua_table() -> str:
    """The transition table as a Lua table literal: ``T[state][event] = new``."""
    rows: dict[str, list[str]] = {}
    for (state, event), new in TRANSITIONS.items():
        rows.setdefault(state.value, []).append(f'["{event.value}"]="{new.value}"')
    body = ",".join(f'["{s}"]={{{",".join(r)}}}' for s, r in sorted(rows.items()))
    return "{" + body + "}"
