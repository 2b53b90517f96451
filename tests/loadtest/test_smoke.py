"""A few seconds of the load-test harness: it must count every knock, Foyer's and the floor's.

No timing is asserted here: figures are benchmarks (docs/performance.md), not tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from loadtest import cli
from tests.support import FoyerProcess


def test_counts_every_knock(foyer: FoyerProcess, foyer2: FoyerProcess, tmp_path: Path) -> None:
    rate, warmup, duration, devices = 60.0, 0.5, 1.5, 2
    code = cli.main(
        [
            "--url",
            foyer.http_url,
            "--url",
            foyer2.http_url,
            # One token each: a random key may begin with "-", which argparse
            # would take for an option if it stood apart.
            f"--api-key={foyer.api_key}",
            f"--secret={foyer.secret}",
            "--hosts",
            "4",
            "--guests",
            "10",
            "--devices",
            str(devices),
            "--rate",
            str(rate),
            "--warmup",
            str(warmup),
            "--duration",
            str(duration),
            "--reply",
            "mixed",
            "--timeout",
            "5",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    (summary,) = tmp_path.glob("*/summary.json")
    session = json.loads(summary.read_text())
    runs = {run["target"]: run for run in session["runs"]}
    assert set(runs) == {"floor", "foyer"}
    for target, run in runs.items():
        knocks = int(rate * (warmup + duration))
        assert run["knocks"] == knocks, target
        assert run["knocks_measured"] == int(rate * duration), target
        assert run["join_requests"] == knocks * devices, target
        assert run["lost"] == 0, target
        assert run["error_count"] == 0, (target, run["errors"])
        assert run["counts"]["outcomes"] == knocks, target
        assert run["latency"]["join_request"]["count"] == run["knocks_measured"] * devices
    for name in ("latency.csv", "timeseries.csv", "latency.png"):
        assert (summary.parent / name).stat().st_size > 0


def test_takes_keys_that_begin_with_a_dash() -> None:
    """token_urlsafe keys start with "-" one time in 64: CI once failed on one."""
    args = cli.parse_args(["--url", "http://127.0.0.1:1", "--api-key=-k", "--secret=-s"])
    assert (args.api_key, args.secret) == ("-k", "-s")
