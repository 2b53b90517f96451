"""``foyer serve --workers N``: the workers die with their supervisor, even
when it is killed with SIGKILL and has no chance to stop them (issue 10,
point 5); otherwise they keep the port and nobody can start Foyer again."""

from __future__ import annotations

import signal
import socket

import psutil

from tests.support import FoyerProcess

DEADLINE = 30.0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_workers_die_with_a_killed_supervisor(redis_url: str) -> None:
    proc = FoyerProcess(redis_url, {"FOYER_DRAIN_TIMEOUT": "2"}, workers=2).start()
    assert proc.process is not None
    supervisor = psutil.Process(proc.process.pid)
    workers = supervisor.children(recursive=True)
    assert len(workers) >= 2, workers
    try:
        proc.stop(signal.SIGKILL)
        _gone, alive = psutil.wait_procs(workers, timeout=DEADLINE)
        assert alive == [], f"workers outlived their supervisor: {alive}\n{proc.log()}"
        assert _port_free(proc.port)
    finally:
        for worker in workers:
            if worker.is_running():
                worker.kill()
