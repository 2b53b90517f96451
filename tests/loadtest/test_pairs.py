"""``--pairs``: floor and Foyer alternate (drift cancels) and the report gives
each pair's ratios and their medians. Pure: no servers."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest import cli, report


def _run(target: str, cpu: float, p50: float, p99: float) -> dict[str, Any]:
    return {
        "target": target,
        "cpu": {"server_us_per_knock": cpu},
        "latency": {"join_request": {"p50": p50, "p99": p99}},
    }


def test_each_pair_has_its_ratios_and_the_medians_are_per_column() -> None:
    foyer = [
        _run("foyer", 1100, 1.0, 4.0),
        _run("foyer", 900, 2.0, 6.0),
        _run("foyer", 1000, 1.0, 5.0),
    ]
    floor = [
        _run("floor", 1000, 1.0, 4.0),
        _run("floor", 1000, 1.0, 3.0),
        _run("floor", 800, 1.0, 5.0),
    ]
    summary = report.pairs(foyer, floor)
    assert [round(r["cpu_ratio"], 2) for r in summary["runs"]] == [1.1, 0.9, 1.25]
    assert summary["median_cpu_ratio"] == pytest.approx(1.1)
    assert summary["median_p50_ratio"] == pytest.approx(1.0)
    assert summary["median_p99_ratio"] == pytest.approx(1.0)
    assert summary["median_foyer_cpu_us"] == 1000
    lines = report._pairs_lines(summary)
    assert "3 pairs" in lines[0] and "median:" in lines[-2] and "1.10x" in lines[-1]


def test_an_even_count_takes_the_middle_two() -> None:
    foyer = [_run("foyer", 1000, 1.0, 1.0), _run("foyer", 1300, 1.0, 1.0)]
    floor = [_run("floor", 1000, 1.0, 1.0)] * 2
    assert report.pairs(foyer, floor)["median_cpu_ratio"] == pytest.approx(1.15)


async def test_runs_alternate_floor_foyer_foyer_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    async def fake_target(kind: str, *_: Any) -> None:
        order.append(kind)

    monkeypatch.setattr(cli, "run_target", fake_target)
    args = cli.parse_args(["--pairs", "3", "--rate", "10", "--quiet"])
    await cli.session_main(args)
    assert order == ["floor", "foyer", "foyer", "floor", "floor", "foyer"]


@pytest.mark.parametrize(
    "extra",
    [["--pairs", "0"], ["--pairs", "2", "--ramp"], ["--pairs", "2", "--target", "foyer"]],
)
def test_pairs_refuse_what_they_cannot_compare(extra: list[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(extra)
