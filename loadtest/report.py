"""The final table, and the JSON, CSV and PNG files of a session of runs.

Every Foyer figure is printed beside the floor's figure from the same session and their
ratio: absolute numbers on a shared 2-core machine are noise, ratios to the floor measured
minutes apart are what can be compared between sessions.
"""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path
from typing import Any

import psutil

from loadtest import metrics

COLUMNS = ("p50", "p90", "p99", "p99_9", "max")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": psutil.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def pairs(foyer: list[dict[str, Any]], floor: list[dict[str, Any]]) -> dict[str, Any]:
    """``--pairs``: each pair's ratios (server CPU per knock cycle, join_request p50
    and p99), in run order, and their medians; one pair moves by 10-20% here."""
    rows = []
    for a, b in zip(foyer, floor, strict=True):
        ca, cb = a["cpu"]["server_us_per_knock"], b["cpu"]["server_us_per_knock"]
        ja, jb = a["latency"]["join_request"], b["latency"]["join_request"]
        rows.append(
            {
                "foyer_cpu_us": ca,
                "floor_cpu_us": cb,
                "cpu_ratio": ca / cb if cb else 0.0,
                "p50_ratio": ja["p50"] / jb["p50"] if jb["p50"] else 0.0,
                "p99_ratio": ja["p99"] / jb["p99"] if jb["p99"] else 0.0,
            }
        )
    return {
        "runs": rows,
        **{f"median_{k}": _median([r[k] for r in rows]) for k in rows[0]},
    }


def _pairs_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"\n{len(summary['runs'])} pairs (floor, Foyer, Foyer, floor, ...):"]
    lines.append("  Foyer µs   floor µs   CPU ratio   p50 ratio   p99 ratio")
    for row in [*summary["runs"], None]:
        if row is None:
            row = {k[len("median_") :]: v for k, v in summary.items() if k.startswith("median_")}
            lines.append("  median:")
        lines.append(
            f"  {row['foyer_cpu_us']:8.0f}   {row['floor_cpu_us']:8.0f}   "
            f"{row['cpu_ratio']:8.2f}x   {row['p50_ratio']:8.2f}x   {row['p99_ratio']:8.2f}x"
        )
    return lines


def table(session: dict[str, Any]) -> str:
    """The human-readable summary: each knock run, floor beside Foyer."""
    lines: list[str] = []
    runs: list[dict[str, Any]] = session.get("runs", [])
    by_rate: dict[float, dict[str, dict[str, Any]]] = {}
    for run in runs:
        if run.get("mode") == "idle":
            continue
        by_rate.setdefault(run["rate"], {})[run["target"]] = run
    for rate, pair in by_rate.items():
        foyer, floor = pair.get("foyer"), pair.get("floor")
        lines.append(f"\n== {rate:,.0f} knocks/s asked ==")
        head = f"{'':26}" + "".join(f"{c:>9}" for c in COLUMNS) + f"{'count':>10}"
        lines.append(head + "   (ms)")
        for metric in metrics.METRICS:
            for label, one in (("foyer", foyer), ("floor", floor)):
                if one is None:
                    continue
                s = one["latency"].get(metric, {})
                if not s.get("count"):
                    continue
                cells = "".join(f"{s[c]:9.2f}" for c in COLUMNS)
                lines.append(f"{metric + ' ' + label:26}{cells}{s['count']:10,d}")
            if foyer and floor:
                a, b = foyer["latency"].get(metric, {}), floor["latency"].get(metric, {})
                if a.get("count") and b.get("count"):
                    cells = "".join(f"{_ratio(a[c], b[c]):>9}" for c in COLUMNS)
                    lines.append(f"{metric + ' ratio':26}{cells}")
        for label, found in (("foyer", foyer), ("floor", floor)):
            if found is None:
                continue
            run = found
            cpu = run.get("cpu", {})
            lines.append(
                f"{label}: achieved {run['achieved_rate']:,.0f}/s of {rate:,.0f}/s, "
                f"knocks {run['knocks']:,d} of {run.get('asked_knocks', 0):,d} scheduled, "
                f"join_requests {run['join_requests']:,d}"
                f"/{run['expected_join_requests']:,d}, lost {run['lost']}, "
                f"errors {run['error_count']}" + (f" {run['errors']}" if run["errors"] else "")
            )
            if cpu:
                lines.append(
                    f"{label}: server CPU {cpu['server_us_per_knock']:.0f} µs/knock cycle "
                    f"({cpu['server_cpu_pct']:.0f}% of a core), redis "
                    f"{cpu['redis_us_per_knock']:.0f} µs, drivers "
                    f"{cpu['driver_us_per_knock']:.0f} µs"
                    f", server RSS {cpu['server_rss_mb']:.0f} MiB, per process "
                    + " / ".join(f"{pct:.0f}%" for pct in cpu.get("per_process_cpu_pct", []))
                )
        if foyer and floor and foyer.get("cpu") and floor.get("cpu"):
            a, b = foyer["cpu"]["server_us_per_knock"], floor["cpu"]["server_us_per_knock"]
            lines.append(f"server CPU per knock cycle, foyer/floor: {_ratio(a, b)}")
    if "pairs" in session.get("headline", {}):
        lines += _pairs_lines(session["headline"]["pairs"])
    hooks = session.get("webhooks")
    if hooks and "received" in hooks:
        lines.append(
            f"\nwebhooks: on, to a receiver of this run that sleeps {hooks['sleep_s']:g} s "
            f"per request; it got {hooks['received']:,d} deliveries during the run"
        )
    for run in runs:
        if run.get("mode") == "idle":
            lines.append(
                f"\n{run['target']} idle: {run['idle_open']:,d} of {run['idle_requested']:,d} "
                f"guests open (knocked and waiting: {run['waiting']:,d}), server RSS "
                f"{run['server_rss_before_mb']:.1f} -> {run['server_rss_after_mb']:.1f} MiB, "
                f"{run['rss_per_connection_kib']:.1f} KiB per connection"
            )
    for target, ramp in session.get("ramp", {}).items():
        lines.append(
            f"\n{target} ramp (p99 and schedule lag p99 < {ramp['threshold_ms']} ms, nothing lost):"
        )
        for step in ramp["steps"]:  # a rate listed twice was retried once
            lines.append(
                f"  {step['rate']:>8,.0f}/s achieved {step['achieved_rate']:>8,.0f}/s "
                f"p50 {step['p50']:7.2f} p99 {step['p99']:8.2f} lag p99 "
                f"{step.get('lag_p99', 0.0):8.1f} connect p50 {step.get('connect_p50', 0.0):7.1f} "
                f"ms lost {step['lost']} "
                f"errors {step['errors']} {'ok' if step['ok'] else 'FAIL'}"
            )
        lines.append(f"  highest sustainable rate: {ramp['sustainable']:,.0f}/s")
    return "\n".join(lines)


def write_files(session: dict[str, Any], outdir: Path) -> list[Path]:
    """summary.json, latency.csv, timeseries.csv and latency.png in ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    path = outdir / "summary.json"
    path.write_text(json.dumps(metrics.as_jsonable(session), indent=2) + "\n")
    written.append(path)

    path = outdir / "latency.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            [
                "target",
                "rate",
                "achieved_rate",
                "metric",
                "count",
                *COLUMNS,
                "lost",
                "errors",
                "server_us_per_knock",
            ]
        )
        for run in session.get("runs", []):
            if run.get("mode") == "idle":
                continue
            for metric, s in run["latency"].items():
                out.writerow(
                    [
                        run["target"],
                        run["rate"],
                        round(run["achieved_rate"], 1),
                        metric,
                        s["count"],
                        *(s[c] for c in COLUMNS),
                        run["lost"],
                        run["error_count"],
                        round(run.get("cpu", {}).get("server_us_per_knock", 0.0), 1),
                    ]
                )
    written.append(path)

    path = outdir / "timeseries.csv"
    with path.open("w", newline="") as f:
        fields = [
            "target",
            "rate",
            "t",
            "knocks_per_s",
            "join_requests",
            "p50",
            "p90",
            "p99",
            "max",
            "errors",
            "open",
            "server_cpu_pct",
            "redis_cpu_pct",
            "server_rss_mb",
        ]
        series = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        series.writeheader()
        for run in session.get("runs", []):
            for point in run.get("timeseries", []):
                series.writerow(
                    {"target": run["target"], "rate": run["rate"], **metrics.as_jsonable(point)}
                )
    written.append(path)

    png = plot(session, outdir / "latency.png")
    if png is not None:
        written.append(png)
    return written


def plot(session: dict[str, Any], path: Path) -> Path | None:
    """Latency percentiles over time, and the latency distribution, for every knock run."""
    runs = [r for r in session.get("runs", []) if r.get("mode") != "idle" and r.get("timeseries")]
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ramp = session.get("ramp", {})
    ncols = 3 if ramp else 2
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.5))
    over_time, dist = axes[0], axes[1]
    colours = {"foyer": "tab:blue", "floor": "tab:grey"}
    for run in runs:
        points = run["timeseries"]
        t = [p["t"] for p in points if "p99" in p]
        colour = colours.get(run["target"], "tab:orange")
        label = f"{run['target']} {run['rate']:,.0f}/s"
        over_time.plot(
            t, [p["p50"] for p in points if "p99" in p], color=colour, ls=":", label=f"{label} p50"
        )
        over_time.plot(
            t, [p["p99"] for p in points if "p99" in p], color=colour, label=f"{label} p99"
        )
        xs = [1.0 / max(1e-6, 1.0 - p / 100.0) for p, _ in run["distribution"]]
        dist.plot(xs, [v for _, v in run["distribution"]], color=colour, label=label)
    over_time.set_title("knock -> join_request, per second")
    over_time.set_xlabel("seconds since start (warm-up included)")
    over_time.set_ylabel("ms")
    over_time.set_yscale("log")
    over_time.legend(fontsize="small")
    dist.set_title("knock -> join_request distribution (measured window)")
    dist.set_xscale("log")
    dist.set_yscale("log")
    ticks = [2, 10, 100, 1000, 10000]
    dist.set_xticks(ticks, ["50%", "90%", "99%", "99.9%", "99.99%"])
    dist.set_xlabel("percentile")
    dist.set_ylabel("ms")
    dist.legend(fontsize="small")
    if ramp:
        ax = axes[2]
        for target, data in ramp.items():
            steps = data["steps"]
            ax.plot(
                [s["rate"] for s in steps],
                [s["p99"] for s in steps],
                marker="o",
                color=colours.get(target, "tab:orange"),
                label=f"{target} p99",
            )
            ax.plot(
                [s["rate"] for s in steps],
                [s["p50"] for s in steps],
                marker=".",
                ls=":",
                color=colours.get(target, "tab:orange"),
                label=f"{target} p50",
            )
            ax.axhline(data["threshold_ms"], color="tab:red", lw=0.8)
        ax.set_title("ramp: latency by asked rate")
        ax.set_xlabel("knocks/s asked")
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
