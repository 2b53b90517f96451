"""The garbage-collection policy: survivors are frozen on a timer (so a full
collection no longer walks them), frozen objects are still freed by reference
counting, a cycle among frozen objects is found by the sweep, and every pause
is reported by generation. In-process, with the interpreter's real collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from server.ops.gc_policy import GcPolicy


class Node:
    """A tracked object that can sit in a cycle and be watched by weakref."""

    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture
async def policy() -> AsyncIterator[tuple[GcPolicy, list[tuple[int, float]]]]:
    pauses: list[tuple[int, float]] = []
    policy = GcPolicy(
        freeze_interval=0.05,
        sweep_interval=0,
        on_pause=lambda gen, s: pauses.append((gen, s)),
    )
    policy.start()
    try:
        yield policy, pauses
    finally:
        await policy.stop()
        gc.unfreeze()  # leave the test process as it found it


async def test_survivors_are_frozen_on_the_timer(
    policy: tuple[GcPolicy, list[tuple[int, float]]],
) -> None:
    survivor = Node()
    frozen = gc.get_freeze_count()
    await asyncio.sleep(0.3)
    assert gc.is_tracked(survivor)
    assert survivor not in gc.get_objects()  # frozen: out of every generation
    assert gc.get_freeze_count() > frozen


async def test_a_frozen_object_is_still_freed_by_reference_counting(
    policy: tuple[GcPolicy, list[tuple[int, float]]],
) -> None:
    survivor = Node()
    ref = weakref.ref(survivor)
    await asyncio.sleep(0.2)
    assert survivor not in gc.get_objects()
    del survivor
    assert ref() is None


async def test_a_cycle_among_frozen_objects_waits_for_the_sweep(
    policy: tuple[GcPolicy, list[tuple[int, float]]],
) -> None:
    gc_policy, _ = policy
    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    await asyncio.sleep(0.2)  # frozen
    del a, b
    gc.collect()
    assert ref() is not None  # a full collection does not reach frozen objects
    assert gc_policy.sweep() >= 2
    assert ref() is None


async def test_every_pause_is_reported_by_generation(
    policy: tuple[GcPolicy, list[tuple[int, float]]],
) -> None:
    _, pauses = policy
    gc.collect(0)
    gc.collect(2)
    generations = {gen for gen, _ in pauses}
    assert {0, 2} <= generations
    assert all(seconds >= 0 for _, seconds in pauses)


async def test_stop_removes_the_callback_and_the_timer() -> None:
    policy = GcPolicy(freeze_interval=0.05, sweep_interval=0, on_pause=lambda g, s: None)
    policy.start()
    try:
        assert len([c for c in gc.callbacks if getattr(c, "__self__", None) is policy]) == 1
    finally:
        await policy.stop()
        gc.unfreeze()
    assert not [c for c in gc.callbacks if getattr(c, "__self__", None) is policy]
