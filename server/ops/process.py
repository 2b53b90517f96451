"""Children that die with their parent (Linux ``PR_SET_PDEATHSIG``).

The embedded Valkey is started with it, and so is each worker of ``foyer
serve --workers N``: uvicorn's supervisor spawns them with multiprocessing
and, killed with SIGKILL, could not stop them; they would keep the port (and
their sockets) with nobody left to manage them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal

log = logging.getLogger("foyer.process")

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits
    (a no-op where ``prctl`` does not exist)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def follow_supervisor() -> None:
    """In a worker spawned by a multiprocessing supervisor: get SIGTERM when it
    dies (so the worker drains and exits), and exit now if it died already
    (before ``prctl``: the kernel would never send the signal). Outside such a
    worker, nothing."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent.pid:
        log.warning("the supervisor is gone; this worker exits")
        raise SystemExit(1)
