"""One measured run: set up hosts, start the driver processes, sample the servers, merge.

The runner itself sends no load. It creates the hosts (Foyer's HTTP API, or nothing for the
floor), splits hosts, guests and rate between ``drivers`` driver processes
(``python -m loadtest.scenario``), starts them all on one ``go`` time, prints a progress
line a second, samples server CPU and RSS with psutil, and merges what the drivers report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from loadtest import metrics
from loadtest.scenario import NS, DriverConfig
from loadtest.spawn import production_env

STREAM_LIMIT = 64 * 1024 * 1024  # a driver's final line carries every histogram


def _py_spy(outdir: Path) -> str | None:
    """py-spy's path (and the output folder made), or None when it is not installed."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    outdir.mkdir(parents=True, exist_ok=True)
    return spy


@dataclasses.dataclass
class Target:
    """What the drivers connect to: hosts on ``host_urls``, guests on ``guest_urls``."""

    kind: str  # "foyer" | "floor"
    host_urls: list[str]  # http://127.0.0.1:P
    guest_urls: list[str]
    api_key: str = ""
    secret: str = ""
    server_pids: list[int] = dataclasses.field(default_factory=list)
    redis_pid: int = 0


@dataclasses.dataclass
class RunConfig:
    hosts: int = 200
    guests: int = 1000
    rate: float = 2000.0
    warmup: float = 3.0
    duration: float = 15.0
    reply: str = "admit"
    devices: int = 1
    codec: str = "msgpack"
    drivers: int = 1
    timeout: float = 10.0
    drain: float = 10.0
    idle: int = 0
    idle_hold: float = 3.0
    client: str = "lean"


def ws_url(http_url: str) -> str:
    return "ws" + http_url[len("http") :] if http_url.startswith("http") else http_url


FLOOR_SECRET = "the floor checks no token, but PyJWT wants 32 bytes"


def mint_token(secret: str, host_id: str, lifetime: float) -> str:
    claims = {"sub": host_id, "exp": int(time.time() + lifetime)}
    return jwt.encode(claims, secret or FLOOR_SECRET, algorithm="HS256")


def _api(url: str, api_key: str, method: str, body: dict[str, Any] | None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {api_key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10.0) as resp:
        result: dict[str, Any] = json.loads(resp.read() or b"{}")
        return result


def create_hosts(
    target: Target, run_id: str, count: int, lifetime: float
) -> list[tuple[str, str, str]]:
    """(id, slug, token) for ``count`` hosts; through the HTTP API for Foyer."""
    hosts = []
    for n in range(count):
        host_id = f"{run_id}-h{n}"
        if target.kind == "floor":
            hosts.append((host_id, host_id, mint_token(FLOOR_SECRET, host_id, lifetime)))
            continue
        base = target.host_urls[0]
        try:
            created = _api(
                f"{base}/api/hosts",
                target.api_key,
                "POST",
                {"id": host_id, "name": f"Load host {n}"},
            )
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise RuntimeError(
                    f"POST /api/hosts: HTTP {exc.code}: {exc.read()[:200]!r}"
                ) from exc
            created = _api(f"{base}/api/hosts/{host_id}", target.api_key, "GET", None)
        if target.secret:
            token = mint_token(target.secret, host_id, lifetime)
        else:
            token = _api(f"{base}/api/hosts/{host_id}/token", target.api_key, "POST", {})["token"]
        hosts.append((host_id, str(created["slug"]), token))
    return hosts


class Run:
    """Drives one target at one rate and returns the merged result."""

    def __init__(
        self,
        target: Target,
        cfg: RunConfig,
        run_id: str,
        progress: Callable[[str], None],
        profile_dir: Path | None = None,
    ) -> None:
        self.profile_dir = profile_dir
        self.target = target
        self.cfg = cfg
        self.run_id = run_id
        self.progress = progress
        self.servers = metrics.ProcessGroup(target.server_pids)
        self.redis = metrics.ProcessGroup([target.redis_pid] if target.redis_pid else [])
        self.timeseries: list[dict[str, Any]] = []
        self._interval: list[str] = []  # driver interval histograms since the last line
        self._latest: dict[int, dict[str, Any]] = {}  # each driver's last tick
        self._tick_errors = 0
        self._exits = 0

    def _driver_configs(self, hosts: list[tuple[str, str, str]]) -> list[DriverConfig]:
        cfg = self.cfg
        k = max(1, min(cfg.drivers, len(hosts) or 1))
        configs = []
        for i in range(k):
            mine = hosts[i::k]
            configs.append(
                DriverConfig(
                    index=i,
                    host_urls=[ws_url(u) for u in self.target.host_urls],
                    guest_urls=[ws_url(u) for u in self.target.guest_urls],
                    hosts=mine,
                    devices=cfg.devices,
                    guests=max(1, cfg.guests // k),
                    rate=cfg.rate / k,
                    warmup=cfg.warmup,
                    duration=cfg.duration,
                    reply=cfg.reply,
                    codec=cfg.codec,
                    drain=cfg.drain,
                    timeout=cfg.timeout,
                    mode="idle" if cfg.idle else "knock",
                    idle=cfg.idle // k + (1 if i < cfg.idle % k else 0),
                    run_id=self.run_id,
                    client=cfg.client,
                )
            )
        return configs

    async def _start_drivers(self, configs: list[DriverConfig]) -> list[asyncio.subprocess.Process]:
        procs = []
        for config in configs:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "loadtest.scenario",
                    json.dumps(dataclasses.asdict(config)),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=STREAM_LIMIT,
                    env=production_env(),
                )
            )
        return procs

    async def _read(
        self, proc: asyncio.subprocess.Process, events: asyncio.Queue[dict[str, Any]]
    ) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "tick":
                self._on_tick(proc.pid, event)
            else:
                await events.put(event)
        await events.put({"event": "exit", "pid": proc.pid})

    async def execute(self) -> dict[str, Any]:
        cfg = self.cfg
        lifetime = cfg.warmup + cfg.duration + 3600
        hosts = create_hosts(self.target, self.run_id, cfg.hosts, lifetime)
        configs = self._driver_configs(hosts)
        procs = await self._start_drivers(configs)
        drivers = metrics.ProcessGroup([p.pid for p in procs])
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        readers = [asyncio.create_task(self._read(p, events)) for p in procs]
        finals: list[dict[str, Any]] = []
        try:
            await self._wait_for(events, "ready", len(procs), finals, limit_s=120.0)
            if cfg.idle:
                return await self._idle(procs, events, finals)
            go_ns = time.monotonic_ns() + NS // 2
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(f"go {go_ns}\n".encode())
                await proc.stdin.drain()
            return await self._knocks(go_ns, procs, drivers, events, finals)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.terminate()
            for proc in procs:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 10.0)
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _wait_for(
        self,
        events: asyncio.Queue[dict[str, Any]],
        kind: str,
        count: int,
        finals: list[dict[str, Any]],
        limit_s: float,
    ) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(limit_s):
            while len(got) < count:
                event = await events.get()
                if event["event"] == "final":
                    finals.append(event)
                if event["event"] == kind:
                    got.append(event)
                elif event["event"] == "exit":
                    self._exits += 1
                    if self._exits > len(finals):  # each driver says `final` before it exits
                        raise RuntimeError(f"a driver exited before {kind!r}")
        return got

    def _on_tick(self, pid: int, event: dict[str, Any]) -> None:
        """Fold a driver's tick into what the next progress line shows."""
        self._interval.append(event["interval"])
        self._latest[pid] = event
        self._tick_errors += event["errors"]

    async def _knocks(
        self,
        go_ns: int,
        procs: list[asyncio.subprocess.Process],
        drivers: metrics.ProcessGroup,
        events: asyncio.Queue[dict[str, Any]],
        finals: list[dict[str, Any]],
    ) -> dict[str, Any]:
        cfg = self.cfg
        measure_ns = go_ns + int(cfg.warmup * NS)
        end_ns = measure_ns + int(cfg.duration * NS)
        samples: dict[str, tuple[float, float, float, int, list[float]]] = {}

        def sample(label: str) -> None:
            s, r, d = self.servers.sample(), self.redis.sample(), drivers.sample()
            each = [p.cpu_s for p in self.servers.each()]
            samples[label] = (s.cpu_s, r.cpu_s, d.cpu_s, s.rss, each)

        sampler = asyncio.create_task(self._sample_series(go_ns, end_ns))
        profilers: list[asyncio.subprocess.Process] = []
        try:
            await asyncio.sleep(max(0.0, (measure_ns - time.monotonic_ns()) / NS))
            sample("start")
            if self.profile_dir is not None:
                profilers = await self._profile(self.profile_dir)
            await asyncio.sleep(max(0.0, (end_ns - time.monotonic_ns()) / NS))
            sample("end")
            bound = cfg.drain * 2 + cfg.timeout * 2 + 30
            await self._wait_for(events, "final", len(procs) - len(finals), finals, limit_s=bound)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            for proc in profilers:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 30.0)
        return self._result(go_ns, finals, samples)

    async def _profile(self, outdir: Path) -> list[asyncio.subprocess.Process]:
        """py-spy on every server process for the measured window (collapsed stacks)."""
        spy = _py_spy(outdir)
        if spy is None:
            self.progress("--profile: py-spy not found (pip install py-spy); not profiling")
            return []
        procs = []
        for i, pid in enumerate(self.target.server_pids):
            role = "hosts" if i < len(self.target.host_urls) else "guests"
            out = outdir / f"profile-{self.target.kind}-{self.cfg.rate:.0f}-{i}-{role}.txt"
            procs.append(
                await asyncio.create_subprocess_exec(
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(max(1, int(self.cfg.duration))),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--subprocesses",
                    "--output",
                    str(out),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        return procs

    async def _sample_series(self, go_ns: int, end_ns: int) -> None:
        """A progress line and a time-series point each second (bounded by the run's end)."""
        last, last_redis = self.servers.sample(), self.redis.sample()
        last_t = time.monotonic()
        last_knocks = 0
        second = 1
        while time.monotonic_ns() < end_ns + int((self.cfg.drain + 5) * NS):
            # Drivers tick on each whole second after go: read their ticks 0.3 s later.
            wake_ns = go_ns + second * NS + 3 * NS // 10
            second += 1
            await asyncio.sleep(max(0.0, (wake_ns - time.monotonic_ns()) / NS))
            now = time.monotonic()
            cur, cur_redis = self.servers.sample(), self.redis.sample()
            wall = now - last_t
            interval, self._interval = self._interval, []
            s = metrics.summary(metrics.merge(interval))
            knocks = sum(e["counts"].get("knocks", 0) for e in self._latest.values())
            point: dict[str, Any] = {
                "t": round((time.monotonic_ns() - go_ns) / NS, 2),
                "knocks_per_s": round((knocks - last_knocks) / wall),
                "join_requests": s["count"],
                "p50": s["p50"],
                "p90": s["p90"],
                "p99": s["p99"],
                "max": s["max"],
                "errors": self._tick_errors,
                "open": sum(e["open"] for e in self._latest.values()),
                "server_cpu_pct": 100 * (cur.cpu_s - last.cpu_s) / wall,
                "redis_cpu_pct": 100 * (cur_redis.cpu_s - last_redis.cpu_s) / wall,
                "server_rss_mb": cur.rss / 2**20,
            }
            self.timeseries.append(point)
            self.progress(
                f"[{self.target.kind} {self.cfg.rate:,.0f}/s] t={point['t']:5.1f}s "
                f"knocks/s={point['knocks_per_s']:6,d} p50={s['p50']:6.2f}ms "
                f"p99={s['p99']:7.2f}ms max={s['max']:7.2f}ms errors={point['errors']} "
                f"open={point['open']} server={point['server_cpu_pct']:4.0f}% "
                f"redis={point['redis_cpu_pct']:3.0f}%"
            )
            last, last_redis, last_t, last_knocks = cur, cur_redis, now, knocks

    def _result(
        self,
        go_ns: int,
        finals: list[dict[str, Any]],
        samples: dict[str, tuple[float, float, float, int, list[float]]],
    ) -> dict[str, Any]:
        cfg = self.cfg
        counts: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for final in finals:
            counts.update(final["counts"])
            errors.update(final["errors"])
        histograms = {
            name: metrics.merge(f["histograms"][name] for f in finals) for name in metrics.METRICS
        }
        measured = counts["knocks_measured"]
        start, end = samples.get("start"), samples.get("end")
        cpu: dict[str, Any] = {}
        if start and end and measured:
            cpu = {
                "server_us_per_knock": 1e6 * (end[0] - start[0]) / measured,
                "redis_us_per_knock": 1e6 * (end[1] - start[1]) / measured,
                "driver_us_per_knock": 1e6 * (end[2] - start[2]) / measured,
                "server_cpu_pct": 100 * (end[0] - start[0]) / cfg.duration,
                "redis_cpu_pct": 100 * (end[1] - start[1]) / cfg.duration,
                "driver_cpu_pct": 100 * (end[2] - start[2]) / cfg.duration,
                "server_rss_mb": end[3] / 2**20,
                # per server process, in the order of the URLs (hosts first, then guests)
                "per_process_cpu_pct": [
                    100 * (b - a) / cfg.duration for a, b in zip(start[4], end[4], strict=True)
                ],
            }
        lost = sum(f["lost"] for f in finals)
        return {
            "target": self.target.kind,
            "rate": cfg.rate,
            "config": dataclasses.asdict(cfg),
            "urls": {"hosts": self.target.host_urls, "guests": self.target.guest_urls},
            "achieved_rate": measured / cfg.duration if cfg.duration else 0.0,
            "knocks": counts["knocks"],
            "knocks_measured": measured,
            "join_requests": counts["join_request"],
            "expected_join_requests": counts["knocks"] * cfg.devices,
            "lost": lost,
            "lost_measured": sum(f["lost_measured"] for f in finals),
            "asked_knocks": sum(f.get("asked", 0) for f in finals),
            # due but never started: the guest slots were all busy until the drain ended
            "not_sent": max(0, sum(f.get("asked", 0) for f in finals) - counts["knocks"]),
            "errors": dict(errors),
            "error_count": sum(errors.values()),
            "counts": dict(counts),
            "latency": {name: metrics.summary(h) for name, h in histograms.items()},
            "distribution": metrics.distribution(histograms["join_request"]),
            "cpu": cpu,
            "timeseries": self.timeseries,
        }

    async def _idle(
        self,
        procs: list[asyncio.subprocess.Process],
        events: asyncio.Queue[dict[str, Any]],
        finals: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Open ``idle`` knocking guests on one server, measure server RSS before and after."""
        cfg = self.cfg
        await asyncio.sleep(1.0)
        before = self.servers.sample()
        started = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go 0\n")
            await proc.stdin.drain()
        opened = await self._wait_for(events, "idle_open", len(procs), finals, limit_s=600.0)
        open_secs = time.monotonic() - started
        await asyncio.sleep(cfg.idle_hold)
        after = self.servers.sample()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"stop\n")
            await proc.stdin.drain()
        await self._wait_for(events, "final", len(procs) - len(finals), finals, limit_s=120.0)
        errors: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for final in finals:
            errors.update(final["errors"])
            counts.update(final["counts"])
        held = sum(e["open"] for e in opened)
        return {
            "target": self.target.kind,
            "mode": "idle",
            "config": dataclasses.asdict(cfg),
            "idle_requested": cfg.idle,
            "idle_open": held,
            "waiting": counts["waiting"],
            "open_seconds": open_secs,
            "errors": dict(errors),
            "server_rss_before_mb": before.rss / 2**20,
            "server_rss_after_mb": after.rss / 2**20,
            "rss_per_connection_kib": (after.rss - before.rss) / 1024 / held if held else 0.0,
            "latency": {
                "connect": metrics.summary(
                    metrics.merge(f["histograms"]["connect"] for f in finals)
                )
            },
        }
