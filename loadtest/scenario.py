"""The driver: simulated hosts and guests over real WebSockets, one process of many.

A driver process gets its share of the hosts, guests and knock rate from the runner (a
JSON config in argv), connects every host device, says ``ready`` on stdout, waits for
``go <monotonic_ns>`` on stdin, then runs the knock schedule open-loop: a ticket is due
every ``1/rate`` seconds, and the first idle guest takes it and cycles (connect, knock,
``waiting``, the host's answer, close). Guests knock only on this driver's hosts, so
every latency is measured inside one process; the runner merges the histograms.

Every loop here is bounded: the schedule by its ticket count and end time, each wait by a
timeout, the drain by ``drain`` seconds. The driver speaks JSON lines on stdout:
``ready``, one ``tick`` a second (interval histogram and counters) and ``final``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from loadtest import metrics, wire
from loadtest.transport import Closed, Endpoint, HandshakeFailed, Socket, open_socket

REPLIES = ("admit", "busy", "deny", "new_meeting")
OUTCOME_TYPES = frozenset({"admitted", "busy", "denied"})
PASSING_TYPES = frozenset({"position", "message", "pong"})  # informational guest frames
NS = 1_000_000_000

# (sequence number, due time in monotonic ns, after the warm-up?); None stops a guest slot.
Tickets = asyncio.Queue[tuple[int, int, bool] | None]


@dataclasses.dataclass
class DriverConfig:
    index: int
    host_urls: list[str]  # ws://127.0.0.1:P base URLs that host devices connect to
    guest_urls: list[str]  # ... that guests connect to
    hosts: list[tuple[str, str, str]]  # (host id, slug, token) for this driver
    devices: int = 1
    guests: int = 100  # concurrent guest slots
    rate: float = 100.0  # knocks per second, this driver's share
    warmup: float = 2.0
    duration: float = 10.0
    reply: str = "admit"  # admit | busy | deny | new_meeting | mixed | none
    codec: str = "msgpack"
    drain: float = 10.0  # seconds to wait for outstanding knocks after the schedule
    timeout: float = 10.0  # per step of a guest cycle
    mode: str = "knock"  # knock | idle
    idle: int = 0  # idle mode: guest connections to open and hold
    hold: float = 10.0  # idle mode: seconds to hold them once open (bounded)
    run_id: str = "lt"
    client: str = "lean"  # lean | websockets (see loadtest.transport)

    @classmethod
    def from_json(cls, text: str) -> DriverConfig:
        raw = json.loads(text)
        raw["hosts"] = [tuple(h) for h in raw["hosts"]]
        return cls(**raw)


@dataclasses.dataclass
class Knock:
    seq: int
    host: int  # index into the driver's hosts
    sent_ns: int
    measured: bool  # sent after the warm-up
    deliveries: int = 0  # join_requests seen, one per host device
    guest_id: str = ""
    reply_ns: int = 0


class Driver:
    """Runs one driver's share of a scenario and reports on stdout."""

    def __init__(self, config: DriverConfig, out: Callable[[dict[str, Any]], None]) -> None:
        self.cfg = config
        self.out = out
        self.encode = wire.encoder(config.codec)
        self.decode = wire.decoder(config.codec)
        self.subprotocol = wire.SUBPROTOCOLS[config.codec]
        self.host_endpoints = [Endpoint(u) for u in config.host_urls]
        self.guest_endpoints = [Endpoint(u) for u in config.guest_urls]
        self.hist = {name: metrics.new_histogram() for name in metrics.METRICS}
        self.interval = metrics.new_histogram()  # join_request, since the last tick
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.knocks: dict[str, Knock] = {}  # by guest name, until every device has it
        self.open_connections = 0
        self.devices: list[list[Socket]] = []
        self.measure_from_ns = 0
        self.asked = 0  # knocks the schedule holds
        self._host_tasks: list[asyncio.Task[None]] = []
        self._drained = asyncio.Event()  # set whenever no knock is waiting for a device

    # -- connections --------------------------------------------------------------

    async def _connect(self, endpoint: Endpoint, path: str) -> Socket:
        ws = await open_socket(self.cfg.client, endpoint, path, self.subprotocol, self.cfg.timeout)
        self.open_connections += 1
        return ws

    async def _close(self, ws: Socket) -> None:
        try:
            await ws.close()
        finally:
            self.open_connections -= 1

    async def connect_hosts(self) -> None:
        """Every device of every host: connect, hello, welcome. 50 handshakes at a time."""
        limit = asyncio.Semaphore(50)
        self.devices = [[] for _ in self.cfg.hosts]

        async def one(index: int, device: int) -> None:
            host_id, _slug, token = self.cfg.hosts[index]
            endpoint = self.host_endpoints[(index + device) % len(self.host_endpoints)]
            async with limit:
                start = time.monotonic_ns()
                ws = await self._connect(endpoint, "/ws/host")
                ws.send(self.encode({"type": "hello", "token": token}))
                welcome = self.decode(await asyncio.wait_for(ws.recv(), self.cfg.timeout))
                if welcome.get("type") != "welcome":
                    raise RuntimeError(f"host {host_id}: expected welcome, got {welcome!r}")
                metrics.record_ns(self.hist["host_connect"], time.monotonic_ns() - start)
            self.devices[index].append(ws)

        await asyncio.gather(
            *(one(i, d) for i in range(len(self.cfg.hosts)) for d in range(self.cfg.devices))
        )
        for index, devices in enumerate(self.devices):
            for device, ws in enumerate(devices):
                self._host_tasks.append(
                    asyncio.create_task(self._host_device(index, ws, answers=device == 0))
                )

    # -- hosts --------------------------------------------------------------------

    def _reply_for(self, seq: int) -> str:
        if self.cfg.reply == "mixed":
            return REPLIES[seq % len(REPLIES)]
        return self.cfg.reply

    async def _host_device(self, index: int, ws: Socket, *, answers: bool) -> None:
        """Read one host device until it closes: time join_requests, answer them."""
        devices = self.cfg.devices
        answer = answers and self.cfg.reply != "none"
        hist = self.hist["join_request"]  # (self.interval is swapped every tick: not cached)
        try:
            while True:
                data = await ws.recv()
                now = time.monotonic_ns()
                frame = self.decode(data)
                kind = frame.get("type")
                if kind != "join_request":
                    self.counts["host_" + str(kind)] += 1
                    if kind == "error":
                        self.errors["host_" + str(frame.get("code"))] += 1
                    continue
                guest = frame["guest"]
                knock = self.knocks.get(guest.get("name", ""))
                if knock is None:
                    self.counts["join_request_unknown"] += 1  # not ours, or a duplicate
                    continue
                self.counts["join_request"] += 1
                elapsed_us = min(max((now - knock.sent_ns) // 1000, 1), metrics.HIGHEST_US)
                if knock.measured:
                    hist.record_value(elapsed_us)
                self.interval.record_value(elapsed_us)
                knock.deliveries += 1
                if knock.deliveries >= devices:
                    del self.knocks[guest["name"]]
                    if not self.knocks:
                        self._drained.set()
                if answer:
                    reply = self._reply_for(knock.seq)
                    knock.guest_id = guest["id"]
                    knock.reply_ns = time.monotonic_ns()
                    ws.send(self.encode({"type": reply, "guest": guest["id"]}))
                    self.counts["replies"] += 1
        except Closed:
            self.counts["host_closed"] += 1
        finally:
            self.open_connections -= 1

    # -- guests -------------------------------------------------------------------

    async def _guest_cycle(self, seq: int, due_ns: int, measured: bool) -> None:
        cfg = self.cfg
        host = seq % len(cfg.hosts)
        slug = cfg.hosts[host][1]
        endpoint = self.guest_endpoints[seq % len(self.guest_endpoints)]
        start = time.monotonic_ns()
        if measured:
            metrics.record_ns(self.hist["lag"], start - due_ns)
        name = f"{cfg.run_id}-{cfg.index}-{seq}"
        try:
            ws = await self._connect(endpoint, f"/ws/guest/{slug}")
        except (OSError, HandshakeFailed, TimeoutError) as exc:
            self.errors["connect_" + _describe(exc)] += 1
            return
        try:
            connected = time.monotonic_ns()
            knock = Knock(seq, host, connected, measured)
            self.knocks[name] = knock
            ws.send(self.encode({"type": "knock", "name": name}))
            self.counts["knocks"] += 1
            if measured:
                self.counts["knocks_measured"] += 1
                metrics.record_ns(self.hist["connect"], connected - start)
            async with asyncio.timeout(cfg.timeout):
                frame = self.decode(await ws.recv())
                kind = frame.get("type")
                while kind in PASSING_TYPES:  # a `position` may overtake `waiting`
                    self.counts[f"{kind}_before_waiting"] += 1
                    frame = self.decode(await ws.recv())
                    kind = frame.get("type")
                if kind == "waiting":
                    self.counts["waiting"] += 1
                    if measured:
                        metrics.record_ns(self.hist["waiting"], time.monotonic_ns() - connected)
                elif kind in OUTCOME_TYPES and cfg.reply != "none":
                    self.counts["outcome_before_waiting"] += 1  # the answer overtook `waiting`
                else:
                    self.errors["guest_" + str(frame.get("code", kind))] += 1
                    return
                if cfg.reply == "none":
                    ws.send(self.encode({"type": "cancel"}))
                    self.counts["cancelled"] += 1
                else:
                    while kind not in OUTCOME_TYPES:
                        frame = self.decode(await ws.recv())
                        kind = frame.get("type")
                        if kind == "error":
                            self.errors["guest_" + str(frame.get("code"))] += 1
                            return
                        if kind == "error":
                            self.errors["guest_" + str(frame.get("code"))] += 1
                            return
                    now = time.monotonic_ns()
                    self.counts["outcomes"] += 1
                    self.counts["outcome_" + str(kind)] += 1
                    if knock.reply_ns and measured:
                        metrics.record_ns(self.hist["outcome"], now - knock.reply_ns)
        except TimeoutError:
            self.errors["guest_timeout"] += 1
        except Closed as exc:
            self.errors[f"guest_closed_{exc.code}"] += 1
        finally:
            await self._close(ws)
        if measured:
            metrics.record_ns(self.hist["cycle"], time.monotonic_ns() - start)

    async def _guest_slot(self, tickets: Tickets) -> None:
        while (ticket := await tickets.get()) is not None:
            try:
                await self._guest_cycle(*ticket)
            except Exception as exc:  # count it and take the next ticket
                self.errors["guest_" + type(exc).__name__] += 1

    async def _schedule(
        self, go_ns: int, tickets: asyncio.Queue[tuple[int, int, bool] | None]
    ) -> None:
        """Put one ticket on the queue every 1/rate seconds, open-loop, then one stop per slot."""
        cfg = self.cfg
        total = self.asked = int(cfg.rate * (cfg.warmup + cfg.duration))
        period_ns = NS / cfg.rate if cfg.rate > 0 else float(NS)
        self.measure_from_ns = go_ns + int(cfg.warmup * NS)
        end_ns = go_ns + int((cfg.warmup + cfg.duration) * NS)
        seq = 0
        while seq < total:
            now = time.monotonic_ns()
            if now > end_ns + NS:  # the loop fell a second behind: stop, report it
                self.counts["not_sent"] += total - seq
                break
            due = min(total, int((now - go_ns) / period_ns) + 1)
            while seq < due:
                due_ns = go_ns + int(seq * period_ns)
                tickets.put_nowait((seq, due_ns, due_ns >= self.measure_from_ns))
                seq += 1
            next_ns = go_ns + int(seq * period_ns)
            await asyncio.sleep(max(0.0, (next_ns - time.monotonic_ns()) / NS))
        for _ in range(cfg.guests):
            tickets.put_nowait(None)

    async def _ticker(self, go_ns: int) -> None:
        """A tick on every whole second after ``go``, so the runner can line drivers up."""
        second = 1
        while True:
            await asyncio.sleep(max(0.0, (go_ns + second * NS - time.monotonic_ns()) / NS))
            self.out(self._tick())
            second += 1

    def _tick(self) -> dict[str, Any]:
        interval, self.interval = self.interval, metrics.new_histogram()
        return {
            "event": "tick",
            "t_ns": time.monotonic_ns(),
            "interval": metrics.encode(interval),
            "counts": dict(self.counts),
            "errors": sum(self.errors.values()),
            "open": self.open_connections,
            "pending": len(self.knocks),
        }

    # -- runs ---------------------------------------------------------------------

    async def run_knocks(self, go_ns: int) -> None:
        cfg = self.cfg
        tickets: Tickets = asyncio.Queue()
        await asyncio.sleep(max(0.0, (go_ns - time.monotonic_ns()) / NS))
        ticker = asyncio.create_task(self._ticker(go_ns))
        slots = [asyncio.create_task(self._guest_slot(tickets)) for _ in range(cfg.guests)]
        try:
            await self._schedule(go_ns, tickets)
            self.out({"event": "scheduled", "t_ns": time.monotonic_ns()})
            _done, late = await asyncio.wait(slots, timeout=cfg.drain + cfg.timeout)
            for task in late:
                task.cancel()
            # Host devices may still be reading the last join_requests.
            if self.knocks:
                self._drained.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), cfg.drain)
        finally:
            ticker.cancel()
            for task in slots:
                task.cancel()
            await asyncio.gather(ticker, *slots, return_exceptions=True)

    async def run_idle(self) -> None:
        """Open ``idle`` guests that knock and then wait, hold them, report how many were open."""
        cfg = self.cfg
        limit = asyncio.Semaphore(100)
        held: list[Socket] = []

        async def one(seq: int) -> None:
            slug = cfg.hosts[seq % len(cfg.hosts)][1]
            endpoint = self.guest_endpoints[seq % len(self.guest_endpoints)]
            async with limit:
                start = time.monotonic_ns()
                try:
                    ws = await self._connect(endpoint, f"/ws/guest/{slug}")
                except (OSError, HandshakeFailed, TimeoutError) as exc:
                    self.errors["connect_" + _describe(exc)] += 1
                    return
                metrics.record_ns(self.hist["connect"], time.monotonic_ns() - start)
                held.append(ws)
                name = f"{cfg.run_id}-{cfg.index}-{seq}"
                try:
                    ws.send(self.encode({"type": "knock", "name": name}))
                    self.counts["knocks"] += 1
                    frame = self.decode(await asyncio.wait_for(ws.recv(), cfg.timeout))
                    self.counts[str(frame.get("type"))] += 1
                except (Closed, TimeoutError) as exc:
                    self.errors["idle_" + type(exc).__name__] += 1

        ticker = asyncio.create_task(self._ticker(time.monotonic_ns()))
        try:
            await asyncio.gather(*(one(i) for i in range(cfg.idle)))
            self.out(
                {"event": "idle_open", "open": self.open_connections, "t_ns": time.monotonic_ns()}
            )
            await asyncio.to_thread(sys.stdin.readline)  # the runner has measured: "stop"
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            await asyncio.gather(*(self._close(ws) for ws in held), return_exceptions=True)

    def final(self) -> dict[str, Any]:
        lost = list(self.knocks.values())
        return {
            "event": "final",
            "index": self.cfg.index,
            "histograms": {name: metrics.encode(h) for name, h in self.hist.items()},
            "counts": dict(self.counts),
            "errors": dict(self.errors),
            "asked": self.asked,
            "lost": len(lost),
            "lost_measured": sum(1 for k in lost if k.measured),
        }

    async def close_hosts(self) -> None:
        for devices in self.devices:
            for ws in devices:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2.0)
        await asyncio.gather(*self._host_tasks, return_exceptions=True)


def _describe(exc: Exception) -> str:
    if isinstance(exc, HandshakeFailed):
        return f"http_{exc.status}"
    return type(exc).__name__


def _write(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def drive(config: DriverConfig) -> None:
    """The whole life of one driver process, talking JSON lines to the runner."""
    driver = Driver(config, _write)
    try:
        if config.mode == "idle":
            _write({"event": "ready", "index": config.index})
            if (await asyncio.to_thread(sys.stdin.readline)).startswith("go "):
                await driver.run_idle()
        else:
            await driver.connect_hosts()
            _write({"event": "ready", "index": config.index})
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line.startswith("go "):
                return
            await driver.run_knocks(int(line.split()[1]))
    finally:
        _write(driver.final())
        await driver.close_hosts()


def main(argv: list[str] | None = None) -> None:
    """``python -m loadtest.scenario CONFIG_JSON``: one driver process (started by the runner)."""
    import resource

    import uvloop

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args = sys.argv[1:] if argv is None else argv
    uvloop.run(drive(DriverConfig.from_json(args[0])))


if __name__ == "__main__":
    main()
