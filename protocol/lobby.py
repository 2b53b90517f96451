"""The lifecycle of a guest in a waiting room: the ONE transition table and
every rule beside it (h11's ``_state.py``, Rule 1: the bits that do not fit
the table must nonetheless live here).

The Lua scripts in ``server/storage/lua`` get every value below rendered in
at load time (``lua_constants``), so Redis enforces these rules atomically
and no other module writes a state, an event, a reason or a verdict as a
literal. ``tests/server/storage/test_lua_lobby.py`` runs every (state, event)
pair through the real Lua and compares the result with ``next_state``.

Guards (checked by ``transition.lua`` before the table is consulted; a guard
that fails answers its verdict and changes nothing):

======================  ===========================================  ================
event                   guard                                        verdict if not
======================  ===========================================  ================
``resume``              the resume secret matches the guest's        ``unknown_guest``
``disconnect``          the socket dropping it is the one holding it ``stale``
``merge``               host presence ``in_meeting`` with the same   ``not_in_meeting``
                        meeting id the reply was built for
``expire``              the guest's deadline has passed              ``not_due``
``time_out``            the guest's maximum wait (``wait_until``,    ``not_due``
                        set by the knock when the host has
                        ``max_wait_s``) has passed; a hold clears it
======================  ===========================================  ================

Then: no guest record -> ``unknown_guest``; the table has no entry -> ``already_resolved``
from a final state (with the stored outcome), else ``invalid``.

Side effects per resulting state (``transition.lua``): entering a FINAL state
removes the guest from the queue, bumps the event counter and publishes
``left`` (a ``LEFT_REASON`` state) or ``resolved`` (with the stored outcome);
``disconnect`` sets the deadline (now + resume window) and publishes ``away``;
``resume`` takes the new socket, clears the deadline and publishes ``resumed``.

Hold (addition) is a queued-state *attribute*, not a state: ``hold`` leaves the
guest ``waiting`` (or ``away``) in its place, stores the host's line and
estimate on the guest (the ``held`` field, put on its card), clears its maximum
wait (the host answered) and publishes ``held``. A held guest that drops and
resumes stays held; any reply ends the hold with the guest's wait.

Maximum wait (addition): ``time_out`` ends an unanswered wait in
``timed_out``, a final state whose guest leaves with the ``LEFT_REASON``
``timed_out``, and, unlike ``cancelled`` and ``expired``, with an outcome: the
polite line the knock stored on the guest (``TIMEOUT_FIELD``), published as
``dismissed`` so the guest gets it and late resumes too.

Deny cool-down (addition): a ``deny`` that wins puts the guest's identity (its
verified email, else its address: ``who``, stored by the knock) in the host's
cool-down set for the host's ``deny_cooldown_s``; ``knock.lua`` refuses that
identity until then, as quietly as a blocked email.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
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
    TIMED_OUT = "timed_out"  # addition: the host's maximum wait passed unanswered


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
    HOLD = "hold"  # addition: keep the guest in its place with a line and an estimate
    TIME_OUT = "time_out"  # addition: the maximum wait passed (the sweep sends it)


class Verdict(StrEnum):
    """What the store answers for one event on one guest."""

    OK = "ok"
    UNKNOWN_GUEST = "unknown_guest"  # no such guest, or a wrong resume secret
    STALE = "stale"  # a disconnect from a socket that no longer holds the guest
    NOT_IN_MEETING = "not_in_meeting"  # merge without the meeting it was built for
    NOT_DUE = "not_due"  # expire before the deadline, time_out before the max wait
    ALREADY_RESOLVED = "already_resolved"  # the guest is in a final state
    INVALID = "invalid"  # the table has no such transition from a queued state


class LeftReason(StrEnum):
    """``guest_left.reason`` (PROTOCOL.md); ``disconnected`` is in the contract
    but never sent: a dropped guest keeps its place, then ``expired``."""

    CANCELLED = "cancelled"
    DISCONNECTED = "disconnected"
    EXPIRED = "expired"
    TIMED_OUT = "timed_out"  # addition: the host's maximum wait passed


class Outcome(StrEnum):
    """The message type a guest gets when a reply wins."""

    ADMITTED = "admitted"
    BUSY = "busy"
    DENIED = "denied"


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
    **{(state, E.HOLD): state for state in _IN_QUEUE},  # an attribute: same state
    **{(state, E.TIME_OUT): S.TIMED_OUT for state in _IN_QUEUE},
}

# A knock puts the guest here.
INITIAL = S.WAITING
# States in which the guest is still in the host's queue.
QUEUED: frozenset[GuestState] = frozenset(_IN_QUEUE)
# Final states: the guest is out of the queue for good.
FINAL: frozenset[GuestState] = frozenset(set(GuestState) - QUEUED)
# Only a dropped guest expires, once its resume window (its deadline) has passed.
EXPIRES_FROM = S.AWAY
# A ``welcome`` lists at most this many guests (the oldest), a ``lobby_page`` at most
# this many: a big lobby must not make a frame a client cannot take (64 KiB).
WELCOME_GUESTS = 80
PAGE_GUESTS = 80

# A guest's record outlives its knock by this much, so that a guest resuming
# late still gets the outcome that was stored with the winning reply.
GUEST_RECORD_TTL_MS = 24 * 3600 * 1000

# How the hosts hear of a guest leaving the queue without a reply.
LEFT_REASON: dict[GuestState, LeftReason] = {
    S.CANCELLED: LeftReason.CANCELLED,
    S.EXPIRED: LeftReason.EXPIRED,
    S.TIMED_OUT: LeftReason.TIMED_OUT,
}
# The guest-hash field holding the outcome a ``time_out`` gives the guest (stored
# by the knock, so the sweep needs no host settings).
TIMEOUT_FIELD = "timeout"
# Raid protection: knocks are counted over a sliding window this long; above the
# host's threshold the devices get one ``raid`` notice, repeated at most this often.
RAID_WINDOW_MS = 60_000
RAID_NOTICE_EVERY_MS = 5_000

# The events a host's reply causes, and what the guest is sent for each.
OUTCOME_FOR_REPLY: dict[LobbyEvent, Outcome] = {
    E.ADMIT: Outcome.ADMITTED,
    E.MERGE: Outcome.ADMITTED,
    E.NEW_MEETING: Outcome.ADMITTED,
    E.BUSY: Outcome.BUSY,
    E.DENY: Outcome.DENIED,
}
# Replies that send the guest to a meeting; ``admitted.mode`` is the event's name.
ADMITTING: frozenset[LobbyEvent] = frozenset(
    e for e, o in OUTCOME_FOR_REPLY.items() if o is Outcome.ADMITTED
)

# Guards: event -> the verdict when its guard fails (see the module docstring).
GUARDS: dict[LobbyEvent, Verdict] = {
    E.RESUME: Verdict.UNKNOWN_GUEST,
    E.DISCONNECT: Verdict.STALE,
    E.MERGE: Verdict.NOT_IN_MEETING,
    E.EXPIRE: Verdict.NOT_DUE,
    E.TIME_OUT: Verdict.NOT_DUE,
}


def next_state(state: GuestState, event: LobbyEvent) -> GuestState:
    """The state after ``event``, or ``InvalidTransition``."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"can't handle {event} when {state}") from None


def reply_for_outcome(outcome_type: str, mode: str | None = None) -> LobbyEvent:
    """The reply that produced a stored outcome (the inverse of
    ``OUTCOME_FOR_REPLY``; ``admitted`` needs its ``mode``)."""
    if outcome_type == Outcome.ADMITTED:
        event = LobbyEvent(mode or E.ADMIT)
        if event not in ADMITTING:
            raise InvalidTransition(f"'{mode}' is not an admitting reply")
        return event
    for event, outcome in OUTCOME_FOR_REPLY.items():
        if outcome == outcome_type and event not in ADMITTING:
            return event
    raise InvalidTransition(f"'{outcome_type}' is not an outcome")


def reason_for(state: GuestState) -> LeftReason:
    """Why a guest in a final state without a stored outcome left the queue."""
    return LEFT_REASON.get(state, LeftReason.EXPIRED)


def _lua(value: object) -> str:
    """A Python value as a Lua literal (strings, booleans, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid Lua string here
    if isinstance(value, dict):
        return "{" + ",".join(f"[{_lua(k)}]={_lua(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def lua_table() -> str:
    """The transition table as a Lua table literal: ``T[state][event] = new``."""
    rows: dict[str, dict[str, str]] = {}
    for (state, event), new in TRANSITIONS.items():
        rows.setdefault(state.value, {})[event.value] = new.value
    return _lua(dict(sorted(rows.items())))


def _lua_is_one_of(name: str, values: Iterable[str]) -> str:
    tests = " or ".join(f"s == {_lua(v)}" for v in sorted(values))
    return f"local function {name}(s) return {tests} end"


def _lua_switch(name: str, params: str, subject: str, cases: dict[str, str]) -> str:
    """``if subject == key then <case> elseif ... end``, inside a function."""
    body = "\n  elseif ".join(f"{subject} == {_lua(k)} then{v}" for k, v in sorted(cases.items()))
    return f"local function {name}({params})\n  if {body}\n  end\n  return nil\nend"


def lua_lookups() -> str:
    """The lifecycle's tables as Lua functions: ``step(state, event)`` (the new
    state or nil), ``final(state)``, ``queued(state)``, ``left(state)`` (the
    reason or nil). A table literal in a script is built again on every call,
    and collected after it (issue 11: 2.5 µs a transition on a busy Valkey, 8-12
    on an idle one); a function's strings are constants of its prototype, and
    comparing two short Lua strings compares two pointers."""
    rows: dict[str, dict[str, str]] = {}
    for (state, event), new in TRANSITIONS.items():
        rows.setdefault(state.value, {})[event.value] = f"return {_lua(new.value)}"
    steps = {
        state: "\n    if "
        + "\n    elseif ".join(
            f"event == {_lua(e)} then {ret}" for e, ret in sorted(events.items())
        )
        + "\n    end"
        for state, events in rows.items()
    }
    left = {s.value: f" return {_lua(r.value)}" for s, r in LEFT_REASON.items()}
    return "\n".join(
        [
            _lua_switch("step", "state, event", "state", steps),
            _lua_is_one_of("final", (s.value for s in FINAL)),
            _lua_is_one_of("queued", (s.value for s in QUEUED)),
            _lua_switch("left", "s", "s", left),
        ]
    )


def lua_constants() -> dict[str, str]:
    """Placeholder -> Lua literal, rendered into every script at load time."""
    return {
        "__TRANSITIONS__": lua_table(),
        "__LOOKUPS__": lua_lookups(),
        "__FINAL__": _lua({s.value: True for s in sorted(FINAL)}),
        "__QUEUED__": _lua({s.value: True for s in sorted(QUEUED)}),
        "__INITIAL__": _lua(INITIAL.value),
        "__EXPIRES_FROM__": _lua(EXPIRES_FROM.value),
        "__LEFT__": _lua({s.value: r.value for s, r in LEFT_REASON.items()}),
        "__EVENT__": _lua({e.name: e.value for e in LobbyEvent}),
        "__VERDICT__": _lua({v.name: v.value for v in Verdict}),
        "__TIMEOUT_FIELD__": _lua(TIMEOUT_FIELD),
        "__RAID_WINDOW_MS__": str(RAID_WINDOW_MS),
        "__RAID_NOTICE_EVERY_MS__": str(RAID_NOTICE_EVERY_MS),
    }
