"""Latency histograms (HdrHistogram, microseconds) and server CPU / RSS sampling (psutil).

Every timestamp in the harness is ``time.monotonic_ns()``: CLOCK_MONOTONIC on Linux, one
clock shared by every process on the machine, so a driver process may subtract a time
taken by another. Each driver keeps its own histograms and ships them encoded; the
runner merges them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import psutil
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes: anything slower is a lost knock, not a latency
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)

# What each histogram measures, in report order.
METRICS = {
    "join_request": "knock -> join_request on every host device (headline)",
    "waiting": "knock -> waiting on the guest",
    "outcome": "host reply -> outcome on the guest",
    "connect": "guest WebSocket connect (TCP + handshake)",
    "host_connect": "host device connect + hello -> welcome",
    "cycle": "guest cycle: connect, knock, answer, close",
    "lag": "knock start behind schedule (driver saturation)",
}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_ns(histogram: HdrHistogram, elapsed_ns: int) -> None:
    """Record a duration given in nanoseconds, clamped into the histogram's range."""
    histogram.record_value(min(max(elapsed_ns // 1000, LOWEST_US), HIGHEST_US))


def encode(histogram: HdrHistogram) -> str:
    data: bytes = histogram.encode()
    return data.decode("ascii")


def decode(encoded: str) -> HdrHistogram:
    histogram: HdrHistogram = HdrHistogram.decode(encoded.encode("ascii"))
    return histogram


def merge(encoded: Iterable[str]) -> HdrHistogram:
    total = new_histogram()
    for item in encoded:
        if item:
            total.add(decode(item))
    return total


def summary(histogram: HdrHistogram) -> dict[str, float | int]:
    """count, percentiles and max, in milliseconds."""
    count = int(histogram.get_total_count())
    out: dict[str, float | int] = {"count": count}
    for p in PERCENTILES:
        key = "p" + (f"{p:g}".replace(".", "_"))
        out[key] = histogram.get_value_at_percentile(p) / 1000.0 if count else 0.0
    out["max"] = histogram.get_max_value() / 1000.0 if count else 0.0
    out["mean"] = histogram.get_mean_value() / 1000.0 if count else 0.0
    return out


def distribution(histogram: HdrHistogram) -> list[tuple[float, float]]:
    """(percentile, ms) points for a latency-by-percentile plot."""
    points: list[tuple[float, float]] = []
    if not histogram.get_total_count():
        return points
    for item in histogram.get_percentile_iterator(5):
        points.append((float(item.percentile_level_iterated_to), item.value_iterated_to / 1000.0))
    return points


@dataclasses.dataclass
class CpuSample:
    cpu_s: float  # user + system seconds, the process and its children
    rss: int  # bytes, the process and its children


class ProcessGroup:
    """A set of processes (each with its children) whose CPU time and RSS we sum."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._procs = [psutil.Process(pid) for pid in pids]

    def each(self) -> list[CpuSample]:
        """One sample per process given (with its children), in order."""
        return [ProcessGroup([proc.pid]).sample() for proc in self._procs]

    def _tree(self) -> Iterator[psutil.Process]:
        for proc in self._procs:
            yield proc
            try:
                yield from proc.children(recursive=True)
            except psutil.Error:
                continue

    def sample(self) -> CpuSample:
        cpu = 0.0
        rss = 0
        for proc in self._tree():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    rss += proc.memory_info().rss
            except psutil.Error:
                continue
        return CpuSample(cpu, rss)


def as_jsonable(value: Any) -> Any:
    """Round floats for the JSON and CSV files."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: as_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_jsonable(v) for v in value]
    return value
