"""A small run of the hot-host scenario on two real Foyer processes (the
device on one, the guests on the other): every guest gets its outcome and none
is closed instead, the welcome stays bounded however long the queue, the
server's own loop-lag histogram is read, and the first-guest probe (the oldest
guest, in a process of its own, never drained) gets its outcome from
``admit_all``. No timing is asserted: the figures are benchmarks
(docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import hothost


def test_a_hot_host_on_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "points.json"
    code = hothost.main(
        ["--waiting", "500", "--drain", "20", "--processes", "2", "--json", str(out)]
    )
    assert code == 0
    (point,) = json.loads(out.read_text())
    # 500 waiting: the first-guest probe and 499 of the driver's, 20 of them drained
    assert point["answered"] == 479 and point["closed_instead"] == 0
    assert point["probe_answered"] is True  # kept waiting through the drain, then admitted
    probe_ms = point["first_outcome_probe_ms"]
    assert isinstance(probe_ms, float) and probe_ms > 0
    # 500 guests at ~170 bytes each would be 85 KB; the welcome lists the first ones only
    assert 0 < point["welcome_bytes"] < 64 * 1024
    assert point["positions_to_last"] >= 1  # the last guest heard it moved up
    assert point["loop_lag_worst_under_ms"] > 0  # the servers' histograms were read


def test_pin_puts_the_servers_on_the_first_cpu_and_the_driver_elsewhere() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("one CPU: nothing to pin apart")
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # In a process of its own: _pin moves its caller too.
        driver = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os; from loadtest.hothost import _pin; "
                f"_pin([{server.pid}]); print(sorted(os.sched_getaffinity(0)))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert os.sched_getaffinity(server.pid) == {cpus[0]}
        assert driver.stdout.strip() == str(cpus[1:])
    finally:
        server.kill()
        server.wait()
