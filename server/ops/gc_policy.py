"""Keeps CPython's full collections short however many sockets are open.

A full (generation 2) collection walks every tracked object. With 10,000
guests waiting on one process (about 40 objects each) that is some 400,000
objects and a 100-180 ms stall of every socket on the process, measured with
``gc.callbacks`` (issue 11). Foyer's objects are freed by reference counting:
under load a visit leaves no cyclic garbage (``gc.DEBUG_SAVEALL`` finds none).
So every ``freeze_interval`` the policy runs a young collection (the cycles
that do form die young) and moves the survivors into the permanent generation
(``gc.freeze``): a full collection then walks only what survived since, and
a frozen object is still freed the moment its last reference goes. A cycle
that forms among frozen objects waits for the rare sweep (``gc.unfreeze``
and a full collection) every ``sweep_interval``, the one pause left that
grows with the lobby.

``foyer_gc_pause_seconds`` (by generation) shows what it does. The frozen
objects are not counted: ``gc.get_freeze_count`` walks them all, itself a
stall of tens of milliseconds at 10,000 sockets.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Protocol

FREEZE_INTERVAL = 1.0  # seconds: what a second of connects leaves is quick to walk
SWEEP_INTERVAL = 3600.0


class PauseObserver(Protocol):
    def __call__(self, generation: int, seconds: float) -> None: ...


class GcPolicy:
    """Owns the freeze timer and the pause callback of one process."""

    def __init__(
        self,
        *,
        freeze_interval: float = FREEZE_INTERVAL,
        sweep_interval: float = SWEEP_INTERVAL,
        on_pause: PauseObserver | None = None,
    ) -> None:
        self.freeze_interval = freeze_interval
        self.sweep_interval = sweep_interval
        self._on_pause = on_pause
        self._began = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Freeze what start-up made (modules, app, scripts) and keep freezing."""
        gc.collect()
        gc.freeze()
        if self._on_pause is not None:
            gc.callbacks.append(self._callback)
        if self.freeze_interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="foyer-gc")

    async def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def freeze_survivors(self) -> None:
        gc.collect(1)
        gc.freeze()

    def sweep(self) -> int:
        """Every object back into the collector, one full collection, then
        frozen again; returns what it found unreachable."""
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        return found

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_sweep = loop.time()
        while True:
            await asyncio.sleep(self.freeze_interval)
            if self.sweep_interval > 0 and loop.time() - last_sweep >= self.sweep_interval:
                self.sweep()
                last_sweep = loop.time()
            else:
                self.freeze_survivors()

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        elif self._on_pause is not None:
            self._on_pause(int(info["generation"]), time.perf_counter() - self._began)
