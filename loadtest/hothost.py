"""The hot-host curve: one host, N guests waiting on its link (issue 11).

For each N it measures, on one Foyer process with its own Valkey: the size of a
device's ``welcome``; a drain of ``--drain`` guests one by one (server CPU per
departure, and how many ``position`` frames the last guest got); ``admit_all``
of the rest (time until every guest has its outcome, server CPU, guests closed
instead of answered); and the worst event-loop stall another host's device on
that process saw meanwhile (its ping round trips, every 10 ms); and the time
from sending ``admit_all`` to the first outcome, both as the driver saw it
(among all its guests' frames) and as a guest in a process of its own saw it
(the oldest in the queue, so in ``admit_all``'s first slice).

    python -m loadtest.hothost --waiting 1000 5000 10000

Loopback only; every loop is bounded in count and time. Not a test: figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from foyer_client import GuestClient, HostClient
from loadtest.runner import _api, _py_spy, mint_token
from loadtest.spawn import spawn
from protocol.errors import ConnectionClosed
from protocol.messages import Admitted, Denied, Position

CONNECT_AT_ONCE = 200
FIRST_GUEST_TIMEOUT = 300.0  # s: the first guest waits through the others' knocks and the drain


@dataclass
class Point:
    waiting: int
    welcome_bytes: int
    drain: int
    cpu_per_departure_ms: float
    positions_to_last: int
    admit_all_s: float
    admit_all_cpu_s: float
    answered: int
    closed_instead: int
    worst_stall_ms: float
    drain_s: float = 0.0
    stall_by_phase_ms: dict[str, float] | None = None  # welcome, drain, admit_all
    # Foyer's own view (foyer_event_loop_lag_seconds over admit_all): how many
    # 50 ms timer ticks ran more than 50 ms late, and the bucket of the worst.
    loop_lag_over_50ms: int = 0
    loop_lag_worst_under_ms: float = 0.0
    # admit_all sent -> the first guest has its outcome, as the driver saw it (it
    # also parses every frame of its other guests: its own work is in this figure)
    first_outcome_ms: float = 0.0
    # admit_all sent -> the oldest guest, in a process of its own, has its outcome
    # (system-wide monotonic clocks subtracted; -1: the probe never reported one)
    first_outcome_probe_ms: float = -1.0
    probe_answered: bool = False  # that probe guest got its outcome (it is not in answered)


def _lag_buckets(http: str) -> dict[float, float]:
    """``le`` -> cumulative count of the server's loop-lag histogram."""
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("foyer_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            found[float(le)] = float(line.rsplit(" ", 1)[1])
    return found


def _lag_between(before: dict[float, float], after: dict[float, float]) -> tuple[int, float]:
    """Ticks over 50 ms late, and the upper bound (ms) of the worst one."""
    moved = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = moved.get(float("inf"), 0.0)
    over = int(total - moved.get(0.05, 0.0))
    worst = min((le for le, n in moved.items() if n >= total), default=float("inf"))
    return over, 1000 * worst


def _cpu(*pids: int) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


async def _probe(url: str, token: str) -> None:
    """Another host's device on the same server, in a process of its own (so the
    guests' client work does not count): pings every 10 ms until stdin closes,
    then prints its round trips over 5 ms as JSON ``[[monotonic start, ms], ...]``
    (CLOCK_MONOTONIC is system-wide: the caller attributes each to a phase)."""
    slow: list[list[float]] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.read(1) else None)
    async with HostClient(url, token) as probe:
        while not done.is_set():
            start = time.monotonic()
            await probe.ping()
            took = 1000 * (time.monotonic() - start)
            if took > 5 and len(slow) < 100_000:
                slow.append([start, round(took, 1)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.01)
    print(json.dumps(slow), flush=True)


async def _helper(*args: str) -> asyncio.subprocess.Process:
    """This module in a process of its own (a probe), talking over pipes."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtest.hothost",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _prober(url: str, token: str) -> asyncio.subprocess.Process:
    proc = await _helper("--probe", url, token)
    await asyncio.sleep(1.0)  # connected and pinging before the work starts
    return proc


async def _first_guest(url: str, slug: str) -> None:
    """The oldest guest of the hot host, in a process of its own (so the other
    guests' client work does not count): knocks, prints ``{"ready": true, "guest":
    id, "position": p}`` once it has its ``waiting``, then waits for its outcome and
    prints ``{"outcome": "admitted"|"denied"|null, "at": monotonic}`` (``at`` taken
    as the outcome is read; CLOCK_MONOTONIC is system-wide). Every wait is bounded;
    it exits when done or when stdin closes."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.read(1) else None)
    guest = GuestClient(url, slug, name="First", queue_size=64)
    try:
        async with asyncio.timeout(30):
            await guest.__aenter__()
    except Exception as error:  # reported to the driver, which goes on without it
        print(json.dumps({"ready": False, "error": repr(error)}), flush=True)
        return
    try:
        print(
            json.dumps(
                {"ready": True, "guest": guest.waiting.guest, "position": guest.waiting.position}
            ),
            flush=True,
        )

        async def outcome() -> tuple[Admitted | Denied, float]:
            message = await guest.wait_for(Admitted, Denied, timeout=FIRST_GUEST_TIMEOUT)
            return message, time.monotonic()

        got = asyncio.ensure_future(outcome())
        stop = asyncio.ensure_future(done.wait())
        await asyncio.wait(
            {got, stop}, timeout=FIRST_GUEST_TIMEOUT + 5, return_when=asyncio.FIRST_COMPLETED
        )
        stop.cancel()
        report: dict[str, object] = {"outcome": None, "at": None}
        if not got.done():
            got.cancel()
        elif got.exception() is not None:
            report["error"] = repr(got.exception())
        else:
            message, at = got.result()
            report = {
                "outcome": "admitted" if isinstance(message, Admitted) else "denied",
                "at": at,
            }
        print(json.dumps(report), flush=True)
    finally:
        await guest.close()


async def _first_guest_probe(
    url: str, slug: str
) -> tuple[asyncio.subprocess.Process, dict[str, object]]:
    """Start ``_first_guest`` and read its ready line (``{}`` if it never came)."""
    proc = await _helper("--first-guest", url, slug)
    ready: dict[str, object] = {}
    assert proc.stdout is not None
    with contextlib.suppress(TimeoutError, ValueError):
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        found = json.loads(line or b"{}")
        if isinstance(found, dict) and found.get("ready"):
            ready = found
    return proc, ready


async def _first_guest_outcome(proc: asyncio.subprocess.Process, wait: float) -> dict[str, object]:
    """The probe's outcome line (``{}`` if it died or never reported within ``wait`` s)."""
    assert proc.stdout is not None
    with contextlib.suppress(TimeoutError, ValueError):
        line = await asyncio.wait_for(proc.stdout.readline(), wait)
        found = json.loads(line or b"{}")
        if isinstance(found, dict):
            return found
    return {}


async def _guests(url: str, slug: str, n: int) -> list[GuestClient]:
    guests: list[GuestClient] = []
    for start in range(0, n, CONNECT_AT_ONCE):
        batch = [
            GuestClient(url, slug, name=f"G{i}", queue_size=64)
            for i in range(start, min(n, start + CONNECT_AT_ONCE))
        ]
        await asyncio.gather(*(g.__aenter__() for g in batch))
        guests += batch
    guests.sort(key=lambda g: g.waiting.position)
    return guests


async def measure(
    servers: list[tuple[str, int]],
    api_key: str,
    secret: str,
    n: int,
    drain: int,
    profile: Path | None = None,
    deny: bool = False,
) -> Point:
    """``servers``: (http URL, pid) of each Foyer process; the host's device is on
    the first, the guests and the probes on the last (one process: all on it).
    With ``deny``, the bulk answer is ``deny_all`` instead of ``admit_all`` (the
    figures keep the ``admit_all`` names). The lobby holds ``n`` guests: the
    first-guest probe (oldest, never drained, answered by the bulk answer) and
    ``n - 1`` of the driver's (``answered`` and ``closed_instead`` count those)."""
    http, pid = servers[0]
    pids = [p for _, p in servers]
    guest_http = servers[-1][0]
    url = http.replace("http://", "ws://")
    guest_url = guest_http.replace("http://", "ws://")
    tag = f"hot{n}-{int(time.time())}"
    created = _api(f"{http}/api/hosts", api_key, "POST", {"id": tag, "name": "Hot Host"})
    _api(f"{http}/api/hosts", api_key, "POST", {"id": tag + "-probe", "name": "Probe"})
    token = mint_token(secret, tag, 3600)
    first, ready = await _first_guest_probe(guest_url, str(created["slug"]))
    probe: asyncio.subprocess.Process | None = None
    guests: list[GuestClient] = []
    worst_ms = -1.0
    first_probe_ms, probe_answered = -1.0, False
    phases: dict[str, tuple[float, float]] = {}
    try:
        guests = await _guests(guest_url, str(created["slug"]), n - 1 if ready else n)
        probe = await _prober(guest_url, mint_token(secret, tag + "-probe", 3600))
        began = time.monotonic()
        async with HostClient(url, token) as device:
            phases["welcome"] = (began, time.monotonic())
            welcome_bytes = len(json.dumps(device.welcome.to_map()))
            last = guests[-1]
            cpu, began = _cpu(*pids), time.monotonic()
            for guest in guests[:drain]:  # the driver's own: the first-guest probe stays
                await device.admit(guest.waiting.guest)
            cpu_drain = _cpu(*pids) - cpu
            drained = time.monotonic()
            phases["drain"] = (began, drained + 1.0)  # the coalesced positions follow
            positions = 0
            with contextlib.suppress(TimeoutError):
                while True:  # until the last guest stops hearing positions
                    await last.wait_for(Position, timeout=2.5)
                    positions += 1
            rest = guests[drain:]
            spy = None
            spy_path = _py_spy(profile) if profile is not None else None
            if profile is not None and spy_path is not None:  # pip install py-spy
                spy = await asyncio.create_subprocess_exec(
                    spy_path, "record", "--pid", str(pid), "--format", "raw", "--duration", "20",
                    "--rate", "200", "--output", str(profile / f"admit-all-{n}.txt"),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(1.0)
            lag_before = [_lag_buckets(h) for h, _ in servers]
            cpu, start = _cpu(*pids), time.monotonic()
            outcome: type[Admitted | Denied] = Denied if deny else Admitted
            arrived: list[float] = []

            async def answered(guest: GuestClient) -> Admitted | Denied:
                message = await guest.wait_for(outcome, timeout=120)
                arrived.append(time.monotonic())
                return message

            waits = [asyncio.ensure_future(answered(g)) for g in rest]  # waiting before the reply
            sent = time.monotonic()
            await (device.deny_all("Not today, sorry.") if deny else device.admit_all())
            outcomes = await asyncio.gather(*waits, return_exceptions=True)
            took = time.monotonic() - start
            first_ms = 1000 * (min(arrived, default=start) - start)  # as the driver saw it
            if ready:  # every guest has its outcome by now: the probe's is in its pipe
                told = await _first_guest_outcome(first, 10.0)
                at = told.get("at")
                probe_answered = told.get("outcome") == ("denied" if deny else "admitted")
                if probe_answered and isinstance(at, float):
                    first_probe_ms = 1000 * (at - sent)
            cpu_all = _cpu(*pids) - cpu
            await asyncio.sleep(0.2)  # the last ticks of the burst observed
            lags = [
                _lag_between(b, _lag_buckets(h))
                for b, (h, _) in zip(lag_before, servers, strict=True)
            ]
            lag_over = sum(over for over, _ in lags)
            lag_worst = max(worst for _, worst in lags)
            phases["admit_all"] = (start, time.monotonic())
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                await spy.wait()
        out, _ = await asyncio.wait_for(probe.communicate(b""), 30)
        slow = json.loads(out.strip() or "[]")
        worst_ms = max((ms for _, ms in slow), default=0.0)
        by_phase = {
            name: max((ms for at, ms in slow if a <= at + ms / 1000 and at <= b), default=0.0)
            for name, (a, b) in phases.items()
        }
        if first.stdin is not None:
            first.stdin.close()  # the probe guest exits on its stdin's end
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.wait(), 5)
    finally:
        for proc in (probe, first):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        await asyncio.gather(*(g.close() for g in guests), return_exceptions=True)
    return Point(
        waiting=n,
        welcome_bytes=welcome_bytes,
        drain=drain,
        cpu_per_departure_ms=round(1000 * cpu_drain / max(drain, 1), 2),
        positions_to_last=positions,
        admit_all_s=round(took, 3),
        admit_all_cpu_s=round(cpu_all, 3),
        answered=sum(isinstance(o, Admitted | Denied) for o in outcomes),
        closed_instead=sum(isinstance(o, ConnectionClosed) for o in outcomes),
        worst_stall_ms=worst_ms,
        drain_s=round(drained - phases["drain"][0], 3),
        stall_by_phase_ms=by_phase,
        loop_lag_over_50ms=lag_over,
        loop_lag_worst_under_ms=lag_worst,
        first_outcome_ms=round(first_ms, 1),
        first_outcome_probe_ms=round(first_probe_ms, 1),
        probe_answered=probe_answered,
    )


def _pin(server_pids: list[int]) -> None:
    """Servers (and Valkey) on CPU 0, this process and what it starts later on
    the rest; on a one-CPU machine nothing moves."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    for pid in server_pids:
        for task in os.listdir(f"/proc/{pid}/task"):  # every thread of it
            os.sched_setaffinity(int(task), {cpus[0]})
    os.sched_setaffinity(0, set(cpus[1:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.hothost", description=__doc__)
    parser.add_argument("--waiting", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--drain", type=int, default=200, help="guests admitted one by one")
    parser.add_argument("--json", type=Path, help="write the points here")
    parser.add_argument("--profile", type=Path, help="py-spy admit_all into this folder")
    parser.add_argument("--deny", action="store_true", help="deny_all instead of admit_all")
    parser.add_argument(
        "--processes",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: the host's device on one Foyer process, the guests on another",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the Foyer processes and Valkey on CPU 0, this driver and its probes on the "
        "others: the servers' loop lag is then their own, not the driver taking their core",
    )
    parser.add_argument("--probe", nargs=2, metavar=("URL", "TOKEN"), help=argparse.SUPPRESS)
    parser.add_argument("--first-guest", nargs=2, metavar=("URL", "SLUG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        asyncio.run(_probe(*args.probe))
        return 0
    if args.first_guest:
        asyncio.run(_first_guest(*args.first_guest))
        return 0
    if any(n > 15_000 or n < args.drain + 2 for n in args.waiting):
        parser.error(  # the first-guest probe is one of the waiting, and is never drained
            "--waiting must be at least --drain + 2 and at most 15000 (fd limits)"
        )
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="foyer-hothost-") as tmp:
        stack = spawn("foyer", args.processes, Path(tmp))
        servers = list(zip(stack.urls, stack.server_pids, strict=True))
        cpus = os.sched_getaffinity(0)
        if args.pin:
            _pin([*stack.server_pids, stack.redis_pid])
        try:
            for n in args.waiting:
                where = (servers, stack.api_key, stack.secret)
                point = asyncio.run(measure(*where, n, args.drain, args.profile, args.deny))
                points.append(point)
                print(json.dumps(asdict(point)), flush=True)
        finally:
            stack.stop()
            os.sched_setaffinity(0, cpus)  # as it was (a caller in this process)
    if args.json:
        args.json.write_text(json.dumps([asdict(p) for p in points], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
