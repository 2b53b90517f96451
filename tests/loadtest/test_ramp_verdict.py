"""The ramp's verdict on one step (pure; no servers)."""

from __future__ import annotations

from typing import Any

from loadtest.cli import ramp_ok


def _step(p99: float, lag_p99: float, **over: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "lost": 0,
        "not_sent": 0,
        "error_count": 0,
        "rate": 1000.0,
        "achieved_rate": 1000.0,
        "latency": {"join_request": {"p99": p99}, "lag": {"p99": lag_p99}},
    }
    result.update(over)
    return result


def test_fast_and_on_time_is_sustainable() -> None:
    assert ramp_ok(_step(12.0, 3.0), 25.0)


def test_knocks_starting_late_fail_even_if_join_request_is_fast() -> None:
    # Past saturation guests queue at connect: the knock -> join_request figure
    # still looks fine, the schedule does not.
    assert not ramp_ok(_step(15.0, 730.0), 25.0)


def test_slow_or_lossy_fails() -> None:
    assert not ramp_ok(_step(40.0, 1.0), 25.0)
    assert not ramp_ok(_step(5.0, 1.0, lost=1), 25.0)
    assert not ramp_ok(_step(5.0, 1.0, achieved_rate=900.0), 25.0)
