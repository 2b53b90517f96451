"""What an operator scrapes at ``GET /metrics``: the Prometheus metrics of one
Foyer process, or of every worker of one ``foyer serve --workers N``.

The Node builds one ``Metrics`` and hands it to each part that records
(constructors take it like any collaborator); with ``FOYER_METRICS=false`` it
is built switched off and every call is a no-op. Each labelled child is
resolved once here, so a record on the hot path is a dict look-up and an
increment, and every label takes a value from a fixed list (never a host or a
guest id: cardinality stays bounded). Metric meanings, scraping and the
multiprocess notes: ``docs/operations-metrics.md``.

Multiprocess mode: ``foyer serve --workers N`` empties a folder and sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start (prometheus-client reads
it when it is imported); each worker then writes its values to files there,
and a scrape on any worker adds up every worker's files.

Imports nothing of the server: any layer may record.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Protocol

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Knock -> device latency, seconds. ``knocked_at`` has millisecond resolution.
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# How late the loop ran a timer, seconds: what one callback held the loop for.
LOOP_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GC_GENERATIONS = ("0", "1", "2")

# The store's knock verdict (``KnockVerdict`` values) -> the ``result`` label.
KNOCK_RESULTS = {
    "ok": "queued",
    "bypass": "bypass",
    "blocked": "blocked",
    "locked": "locked",
    "rate_limited": "rate_limited",
    "unknown_link": "unknown_link",
    "cooling": "cooling",  # denied within the host's deny cool-down
}
REPLY_ACTIONS = ("admit", "merge", "new_meeting", "busy", "deny", "hold")
ReplyResult = Literal["won", "already_resolved", "error"]
REPLY_RESULTS: tuple[ReplyResult, ...] = ("won", "already_resolved", "error")
SlowReason = Literal["frames", "bytes", "write_timeout", "held"]
SLOW_REASONS: tuple[SlowReason, ...] = ("frames", "bytes", "write_timeout", "held")
RedisSource = Literal["batcher", "pubsub"]
REDIS_SOURCES: tuple[RedisSource, ...] = ("batcher", "pubsub")
RecoveryResult = Literal["started", "succeeded", "failed"]
RECOVERY_RESULTS: tuple[RecoveryResult, ...] = ("started", "succeeded", "failed")
EmailResult = Literal["sent", "failed"]
EMAIL_RESULTS: tuple[EmailResult, ...] = ("sent", "failed")


class Value(Protocol):
    """One labelled child of a metric (or the no-op that stands in for it)."""

    def inc(self, amount: float = 1) -> None: ...


class Level(Value, Protocol):
    def dec(self, amount: float = 1) -> None: ...


class Distribution(Protocol):
    def observe(self, amount: float) -> None: ...


class _Off:
    """Every metric when recording is off."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


OFF = _Off()


class Metrics:
    """Foyer's metrics; ``Metrics(enabled=False)`` records nothing."""

    def __init__(self, *, enabled: bool = True, multiprocess_dir: str | None = None) -> None:
        self.enabled = enabled
        self.multiprocess_dir = multiprocess_dir if enabled else None
        self.host_devices: Level = OFF
        self.guests_connected: Level = OFF
        self.guests_waiting: Level = OFF
        self.delivery: Distribution = OFF
        self.loop_lag: Distribution = OFF
        self._gc_pause: dict[str, Distribution] = dict.fromkeys(GC_GENERATIONS, OFF)
        self._knocks: dict[str, Value] = dict.fromkeys(KNOCK_RESULTS, OFF)
        self._replies: dict[tuple[str, str], Value] = {
            (a, r): OFF for a in REPLY_ACTIONS for r in REPLY_RESULTS
        }
        self._slow: dict[str, Value] = dict.fromkeys(SLOW_REASONS, OFF)
        self._redis: dict[str, Value] = dict.fromkeys(REDIS_SOURCES, OFF)
        self._recoveries: dict[str, Value] = dict.fromkeys(RECOVERY_RESULTS, OFF)
        self._emails: dict[str, Value] = dict.fromkeys(EMAIL_RESULTS, OFF)
        if enabled:
            self._build()

    def _build(self) -> None:
        # Imported here: prometheus-client picks its storage (memory or files)
        # from PROMETHEUS_MULTIPROC_DIR when first imported.
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )
        from prometheus_client.process_collector import ProcessCollector

        # No ``*_created`` series: they double the scrape and say nothing here.
        disable_created_metrics()  # type: ignore[no-untyped-call]

        self._registry = CollectorRegistry(auto_describe=True)
        reg = self._registry
        if self.multiprocess_dir:
            _forget_dead_workers(self.multiprocess_dir)
        else:  # CPU, memory, descriptors: of this one process (not in multiprocess mode)
            ProcessCollector(namespace="foyer", registry=reg)
        connections = Gauge(
            "foyer_connections",
            "Open WebSocket connections on this process, by role.",
            ["role"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.host_devices = connections.labels("host_device")
        self.guests_connected = connections.labels("guest")
        self.guests_waiting = Gauge(
            "foyer_guests_waiting",
            "Guests in a waiting room whose socket is on this process (per process: "
            "add up over processes for a host's whole queue).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        knocks = Counter(
            "foyer_knocks", "Knocks handled by this process, by result.", ["result"], registry=reg
        )
        self._knocks = {v: knocks.labels(r) for v, r in KNOCK_RESULTS.items()}
        replies = Counter(
            "foyer_replies",
            "Host replies to a guest, by action and result (exactly one reply per guest wins).",
            ["action", "result"],
            registry=reg,
        )
        self._replies = {key: replies.labels(*key) for key in self._replies}
        self.delivery = Histogram(
            "foyer_knock_delivery_seconds",
            "Knock (guest info's knocked_at, set by the knocking process) to the join_request "
            "queued on the host's devices on this process; one observation per knock.",
            buckets=DELIVERY_BUCKETS,
            registry=reg,
        )
        self.loop_lag = Histogram(
            "foyer_event_loop_lag_seconds",
            "How late this process's event loop ran a timer due every 50 ms: a sample over "
            "50 ms means something held the loop that long (every socket on it waited).",
            buckets=LOOP_LAG_BUCKETS,
            registry=reg,
        )
        gc_pause = Histogram(
            "foyer_gc_pause_seconds",
            "How long each of this process's garbage collections held the loop, by "
            "generation (2: a full collection; short however many sockets are open, "
            "see docs/operations-metrics.md).",
            ["generation"],
            buckets=GC_PAUSE_BUCKETS,
            registry=reg,
        )
        self._gc_pause = {g: gc_pause.labels(g) for g in GC_GENERATIONS}
        slow = Counter(
            "foyer_slow_consumer_disconnects",
            "Sockets closed with 4013 because the peer did not keep up, by reason.",
            ["reason"],
            registry=reg,
        )
        self._slow = {r: slow.labels(r) for r in SLOW_REASONS}
        redis = Counter(
            "foyer_redis_errors",
            "Redis failures: a failed pipeline batch (batcher) or a failed pub/sub read "
            "(pubsub, followed by a reconnect).",
            ["source"],
            registry=reg,
        )
        self._redis = {s: redis.labels(s) for s in REDIS_SOURCES}
        recoveries = Counter(
            "foyer_pubsub_recoveries",
            "Hosts recovered from a store snapshot after their channel was re-subscribed: "
            "started, succeeded, failed (each failed attempt; it is retried).",
            ["result"],
            registry=reg,
        )
        self._recoveries = {r: recoveries.labels(r) for r in RECOVERY_RESULTS}
        emails = Counter(
            "foyer_emails", "Emails to hosts who were away, by result.", ["result"], registry=reg
        )
        self._emails = {r: emails.labels(r) for r in EMAIL_RESULTS}

    # -- recording (all cheap, all bounded labels) ----------------------------------

    def knocked(self, verdict: str) -> None:
        """``verdict``: a ``KnockVerdict`` value."""
        self._knocks[verdict].inc()

    def replied(self, action: str, result: ReplyResult) -> None:
        """``action``: a reply's ``LobbyEvent`` value (admit, merge, ...)."""
        self._replies[action, result].inc()

    def delivered(self, knocked_at_ms: object) -> None:
        """A knock's join_request was queued on this process's devices of its host
        (``knocked_at_ms``: the guest info's ``knocked_at``, wall clock)."""
        if isinstance(knocked_at_ms, int):
            self.delivery.observe(max(0.0, time.time() - knocked_at_ms / 1000))

    def gc_paused(self, generation: int, seconds: float) -> None:
        self._gc_pause[str(min(generation, 2))].observe(seconds)

    def slow_consumer(self, reason: SlowReason) -> None:
        self._slow[reason].inc()

    def redis_error(self, source: RedisSource) -> None:
        self._redis[source].inc()

    def recovery(self, result: RecoveryResult) -> None:
        self._recoveries[result].inc()

    def email(self, result: EmailResult) -> None:
        self._emails[result].inc()

    # -- exposition --------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type (every worker's values
        added up in multiprocess mode)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if not self.enabled:
            return b"", CONTENT_TYPE_LATEST
        registry = self._registry
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def families(self) -> list[str]:
        """The names of Foyer's own metric families (the dashboard has a panel each)."""
        if not self.enabled:
            return []
        names = {m.name for m in self._registry.collect()}
        return sorted(n for n in names if n.startswith("foyer_") and "process" not in n)

    def close(self) -> None:
        """This worker stops: its live gauges no longer count."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


def multiprocess_dir() -> str | None:
    """The folder ``foyer serve --workers N`` set up for this worker, if any."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty ``path`` (values of an earlier run must not be added to this one's)
    and point prometheus-client at it; called before any worker starts."""
    path = path.resolve()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


_LIVE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db$")


def _live_pids(folder: str) -> Iterable[int]:
    for name in glob.glob(os.path.join(folder, "gauge_live*_*.db")):
        found = _LIVE_FILE.search(name)
        if found:
            yield int(found.group(1))


def _forget_dead_workers(folder: str) -> None:
    """A worker that died without clean-up (uvicorn restarts it under a new pid)
    leaves its live gauges behind: drop those of every pid that is gone."""
    from prometheus_client import multiprocess

    for pid in set(_live_pids(folder)):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, someone else's
            continue


OFF_METRICS = Metrics(enabled=False)  # for parts built outside a Node (tests, the CLI)
