"""``foyer-loadtest``: measure the knock -> host notification path, Foyer beside its floor.

Default session: start a Valkey and two floor relays, run the scenario, stop them; start a
Valkey and two Foyer processes (hosts on the first, guests on the second, so every knock
crosses Redis), run the same scenario, stop them; print the table with Foyer's figures as
ratios to the floor's and write summary.json, latency.csv, timeseries.csv and latency.png
into ``--out``.

    foyer-loadtest --spawn 2 --rate 2000 --duration 20
    foyer-loadtest --spawn 2 --ramp --rate 1000
    foyer-loadtest --idle 19000
    foyer-loadtest --url http://127.0.0.1:8000 --url http://127.0.0.1:8001 --no-floor
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import os
import secrets
import socket
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from loadtest import report, spawn
from loadtest.receiver import sleeping_receiver
from loadtest.runner import Run, RunConfig, Target

REPLY_MODES = ("admit", "busy", "deny", "new_meeting", "mixed", "none")

# Hard bounds: the harness must never become an unbounded load generator.
LIMITS = {
    "rate": 100_000.0,
    "duration": 900.0,
    "warmup": 120.0,
    "hosts": 10_000,
    "guests": 20_000,
    "devices": 10,
    "drivers": 16,
    "idle": 100_000,
    "spawn": 8,
    "ramp_retries": 3,
    "pairs": 20,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="foyer-loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_argument_group("target")
    where.add_argument(
        "--spawn",
        type=int,
        default=None,
        metavar="N",
        help="start N Foyer processes and a Valkey of their own (default 2 unless --url)",
    )
    where.add_argument(
        "--url",
        action="append",
        default=[],
        help="a running Foyer (http://host:port); give two to put hosts on the first and "
        "guests on the second",
    )
    where.add_argument("--allow-remote", action="store_true", help="allow non-loopback --url")
    where.add_argument("--api-key", default=os.environ.get("FOYER_API_KEY", ""))
    where.add_argument(
        "--secret",
        default=os.environ.get("FOYER_SECRET", ""),
        help="HS256 key to mint host tokens (else POST /api/hosts/{id}/token)",
    )
    where.add_argument("--workers", type=int, default=1, help="foyer serve --workers (spawn)")
    where.add_argument(
        "--target",
        choices=("both", "foyer", "floor"),
        default="both",
        help="what to measure; 'both' runs the floor first, then Foyer",
    )
    where.add_argument("--no-floor", dest="target", action="store_const", const="foyer")
    where.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a FOYER_* variable for the spawned Foyer processes, e.g. FOYER_METRICS=false "
        "(repeatable; for A/B runs)",
    )

    where.add_argument(
        "--webhook-sleep",
        type=float,
        default=None,
        metavar="S",
        help="deliver Foyer's webhooks to a receiver of the run's own that sleeps S seconds "
        "before answering (0: answers at once); shows a slow integrator costs no knock latency",
    )

    where.add_argument(
        "--hot-host",
        type=int,
        nargs="+",
        metavar="N",
        help="the hot-host scenario instead: one host with N guests waiting, for each N "
        "(welcome size, CPU per departure, drain time, admit all, worst loop stall per "
        "phase, the server's own loop lag); one Foyer process, or with --spawn 2 the "
        "device on one and the guests on the other; see loadtest/hothost.py",
    )

    load = p.add_argument_group("load")
    load.add_argument("--hosts", type=int, default=200)
    load.add_argument("--guests", type=int, default=1000, help="concurrent guest slots")
    load.add_argument("--rate", type=float, default=2000.0, help="knocks per second")
    load.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    load.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    load.add_argument(
        "--pairs",
        type=int,
        default=1,
        metavar="N",
        help="with --target both: N runs of each, alternating floor, Foyer, Foyer, floor, "
        "... (drift cancels), and the median of the N ratios; one pair's CPU ratio moves "
        "by 10-20%% on a shared machine",
    )
    load.add_argument("--reply", choices=REPLY_MODES, default="admit")
    load.add_argument("--devices", type=int, default=1, help="devices per host")
    load.add_argument("--subprotocol", choices=("msgpack", "json"), default="msgpack")
    load.add_argument("--drivers", type=int, default=1, help="driver processes")
    load.add_argument("--timeout", type=float, default=10.0, help="per step of a guest cycle")
    load.add_argument(
        "--client",
        choices=("lean", "websockets"),
        default="lean",
        help="the driver's WebSocket client (see loadtest/transport.py)",
    )

    ramp = p.add_argument_group("ramp")
    ramp.add_argument(
        "--ramp",
        action="store_true",
        help="step the rate up from --ramp-start until p99 (or the schedule lag's p99) "
        "passes --threshold or a knock is lost; report the highest sustainable rate",
    )
    ramp.add_argument("--ramp-start", type=float, default=250.0)
    ramp.add_argument("--ramp-factor", type=float, default=1.25)
    ramp.add_argument(
        "--ramp-retries",
        type=int,
        default=1,
        help="run a failing step again this many times before stopping (shared machines)",
    )
    ramp.add_argument("--ramp-max", type=float, default=40_000.0)
    ramp.add_argument("--threshold", type=float, default=25.0, help="p99 limit in ms")

    idle = p.add_argument_group("idle")
    idle.add_argument(
        "--idle",
        type=int,
        default=0,
        metavar="N",
        help="open N guests that knock and wait on one process; report RSS per connection",
    )
    idle.add_argument("--idle-hold", type=float, default=3.0)

    p.add_argument("--out", type=Path, default=Path("loadtest-results"))
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--profile",
        action="store_true",
        help="run py-spy on every server process over each measured window; collapsed "
        "stacks go to the output folder (pip install py-spy)",
    )
    args = p.parse_args(argv)

    for name, limit in LIMITS.items():
        value = getattr(args, name)
        if value is not None and not 0 <= value <= limit:
            p.error(f"--{name} must be between 0 and {limit:,}")
    if args.rate <= 0 or args.duration <= 0:
        p.error("--rate and --duration must be positive")
    if args.url and args.spawn:
        p.error("give --url or --spawn, not both")
    if not args.url and args.spawn is None:
        args.spawn = 1 if args.idle else 2
    for item in args.server_env:
        name, eq, _ = item.partition("=")
        if not eq or not name.startswith("FOYER_"):
            p.error(f"--server-env {item!r}: give FOYER_NAME=VALUE")
    if len(args.url) > 2:
        p.error("at most two --url (hosts, guests)")
    for url in args.url:
        if not args.allow_remote and not _is_loopback(url):
            p.error(f"{url} is not a loopback address; add --allow-remote if you mean it")
    if args.url and args.target != "floor" and not args.api_key:
        p.error("--url needs --api-key (or FOYER_API_KEY) to create hosts")
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    if args.pairs > 1 and (args.target != "both" or args.ramp or args.idle or args.url):
        p.error("--pairs needs --target both and spawned servers, without --ramp or --idle")
    if args.idle and args.drivers == 1:
        args.drivers = max(1, -(-args.idle // 15_000))  # a driver holds at most ~15k sockets
    return args


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def _progress(quiet: bool) -> Any:
    tty = sys.stderr.isatty()

    def show(line: str) -> None:
        if quiet:
            return
        if tty:
            sys.stderr.write("\r\x1b[2K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def _run_config(args: argparse.Namespace, rate: float) -> RunConfig:
    return RunConfig(
        hosts=args.hosts,
        guests=args.guests,
        rate=rate,
        warmup=args.warmup,
        duration=args.duration,
        reply=args.reply,
        devices=args.devices,
        codec=args.subprotocol,
        drivers=args.drivers,
        timeout=args.timeout,
        idle=args.idle,
        idle_hold=args.idle_hold,
        client=args.client,
    )


def _target(kind: str, stack: spawn.Stack | None, args: argparse.Namespace) -> Target:
    if stack is not None:
        urls = stack.urls
        half = max(1, len(urls) // 2)
        hosts, guests = urls[:half], (urls[half:] or urls[:half])
        if args.idle:
            hosts = guests = urls[:1]
        return Target(
            kind,
            hosts,
            guests,
            api_key=stack.api_key,
            secret=stack.secret,
            server_pids=stack.server_pids,
            redis_pid=stack.redis_pid,
        )
    urls = [u.rstrip("/") for u in args.url]
    return Target(kind, urls[:1], urls[-1:], api_key=args.api_key, secret=args.secret)


def ramp_ok(result: dict[str, Any], threshold: float) -> bool:
    """A step is sustainable when nothing is lost, knock -> join_request p99 is
    under the threshold, AND knocks start on time (schedule lag p99 under the
    threshold too): past saturation guests queue at connect for seconds while
    the join_request figure, which starts at the knock, still looks fine."""
    p99: float = result["latency"]["join_request"]["p99"]
    lag_p99: float = result["latency"]["lag"]["p99"]
    return bool(
        result["lost"] == 0
        and result["not_sent"] == 0
        and result["error_count"] == 0
        and result["achieved_rate"] >= 0.95 * result["rate"]
        and p99 <= threshold
        and lag_p99 <= threshold
    )


async def run_target(
    kind: str, args: argparse.Namespace, session: dict[str, Any], show: Any, workdir: Path
) -> None:
    count = 2 if (kind == "floor" and not args.spawn) else args.spawn
    if args.idle:
        count = 1
    stack = None
    hooks = contextlib.ExitStack()
    if count:
        show(f"starting {kind}: valkey + {count} process(es)...")
        extra = dict(item.partition("=")[::2] for item in args.server_env)
        if kind == "foyer" and args.webhook_sleep is not None:
            receiver = hooks.enter_context(sleeping_receiver(args.webhook_sleep))
            extra = {**receiver.env(), **extra}
            session["webhooks"] = {"sleep_s": args.webhook_sleep, "receiver": receiver}
        stack = spawn.spawn(kind, count, workdir / kind, workers=args.workers, extra_env=extra)
    try:
        target = _target(kind, stack, args)
        rate = args.ramp_start if args.ramp and not args.idle else args.rate
        steps: list[dict[str, Any]] = []
        retries = args.ramp_retries
        for _step in range(40):  # bounded: 250 * 1.25**40 is far past --ramp-max
            run_id = f"lt{secrets.token_hex(3)}"
            profile = args.outdir if args.profile else None
            result = await Run(target, _run_config(args, rate), run_id, show, profile).execute()
            if not args.quiet:
                sys.stderr.write("\n")
            session["runs"].append(result)
            if not args.ramp or args.idle:
                break
            s = result["latency"]["join_request"]
            ok = ramp_ok(result, args.threshold)
            steps.append(
                {
                    "rate": rate,
                    "achieved_rate": result["achieved_rate"],
                    "p50": s["p50"],
                    "p99": s["p99"],
                    "lag_p99": result["latency"]["lag"]["p99"],
                    "connect_p50": result["latency"]["connect"]["p50"],
                    "lost": result["lost"],
                    "errors": result["error_count"],
                    "server_us_per_knock": result["cpu"].get("server_us_per_knock", 0.0),
                    "ok": ok,
                }
            )
            if not ok and retries > 0:
                retries -= 1
                continue  # the same rate once more: one noisy step must not end the ramp
            if not ok or rate * args.ramp_factor > args.ramp_max:
                break
            retries = args.ramp_retries
            rate = round(rate * args.ramp_factor, -1)
        if steps:
            good = [s["rate"] for s in steps if s["ok"]]
            session.setdefault("ramp", {})[kind] = {
                "threshold_ms": args.threshold,
                "steps": steps,
                "sustainable": max(good) if good else 0.0,
            }
    except Exception:
        if stack is not None:
            sys.stderr.write(stack.log_tail() + "\n")
        raise
    finally:
        if stack is not None:
            stack.stop()
        hooks_info = session.get("webhooks")
        if hooks_info and "receiver" in hooks_info:
            hooks_info["received"] = hooks_info.pop("receiver").received
        hooks.close()


async def session_main(args: argparse.Namespace) -> dict[str, Any]:
    show = _progress(args.quiet)
    session: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "machine": report.machine(),
        "runs": [],
    }
    kinds = {"both": ["floor", "foyer"], "foyer": ["foyer"], "floor": ["floor"]}[args.target]
    if args.pairs > 1 and len(kinds) == 2:
        kinds = [k for i in range(args.pairs) for k in (kinds if i % 2 == 0 else kinds[::-1])]
    with tempfile.TemporaryDirectory(prefix="foyer-loadtest-") as tmp:
        for n, kind in enumerate(kinds):
            await run_target(kind, args, session, show, Path(tmp) / str(n))
    return session


def summarise(session: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, Foyer as a ratio to the floor (also stored in summary.json)."""
    runs = [r for r in session["runs"] if r.get("mode") != "idle"]
    foyer = [r for r in runs if r["target"] == "foyer"]
    floor = [r for r in runs if r["target"] == "floor"]
    out: dict[str, Any] = {}
    if foyer and floor:
        a, b = foyer[0], floor[0]
        ja, jb = a["latency"]["join_request"], b["latency"]["join_request"]
        out = {
            "rate": a["rate"],
            "foyer_p50_ms": ja["p50"],
            "foyer_p99_ms": ja["p99"],
            "floor_p50_ms": jb["p50"],
            "floor_p99_ms": jb["p99"],
            "p99_ratio": ja["p99"] / jb["p99"] if jb["p99"] else None,
            "p50_ratio": ja["p50"] / jb["p50"] if jb["p50"] else None,
            "foyer_cpu_us_per_cycle": a.get("cpu", {}).get("server_us_per_knock"),
            "floor_cpu_us_per_cycle": b.get("cpu", {}).get("server_us_per_knock"),
            "lost": a["lost"],
        }
        if len(foyer) > 1 and len(foyer) == len(floor):
            out["pairs"] = report.pairs(foyer, floor)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hot_host:
        from loadtest import hothost

        processes = ["--processes", "2"] if args.spawn == 2 else []
        return hothost.main(["--waiting", *map(str, args.hot_host), *processes])
    args.outdir = args.out / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    session = asyncio.run(session_main(args))
    session["headline"] = summarise(session)
    files = report.write_files(session, args.outdir)
    print(report.table(session))
    print("\nwritten: " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
