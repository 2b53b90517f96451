"""The socket layer, measured (issue 11, target 3): what a bare WebSocket visit
costs the server on each candidate stack, and what an idle socket holds.

A bare cycle is what every guest visit pays before Foyer does anything:
connect, upgrade, one frame each way, close. Each candidate serves the same
tiny handler (read one frame, answer it, close), in a process of its own on
127.0.0.1, with uvloop:

- ``uvicorn-starlette``: Foyer's stack today (uvicorn, its websockets-sansio
  protocol, Starlette's ``WebSocket`` over ASGI);
- ``uvicorn``: the same without Starlette (the ASGI messages by hand);
- ``websockets``: the websockets library's own asyncio server;
- ``aiohttp``: aiohttp's server;
- ``picows``: picows (Cython; a listener whose callbacks write straight to the
  transport), on uvloop's own transports;
- ``picows-aiofastnet``: the same on picows's default transports (aiofastnet);
- ``websockets-sansio-protocol``: a plain ``asyncio.Protocol`` that runs the
  websockets sans-I/O ``ServerProtocol`` and writes frames from
  ``data_received``, with no task per socket;
- ``foyer``: Foyer's own layer now: uvicorn's h11 protocol (with Foyer's
  header timeout) hands the upgrade to a gate that answers the handshake and
  serves the socket with ``server.lobby.connection.Connection`` and one task
  (the same code the lobby endpoints run on; Starlette stays for HTTP).

    python -m loadtest.socket_layers --rate 500 2000 --duration 10 --idle 2000

``--reverse`` measures the candidates in the reverse order (a second run in the
other order shows what the order itself does to the figures).

For each: server CPU per cycle (psutil, the server process only), cycle time
p50/p99 from the driver, and the server's RSS growth per idle open socket.
Loopback only; every loop is bounded in count and time. Not a test: figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import psutil

CANDIDATES = (
    "uvicorn-starlette",
    "uvicorn",
    "websockets",
    "aiohttp",
    "picows",
    "picows-aiofastnet",
    "websockets-sansio-protocol",
    "foyer",
)
PICOWS_READ_BUFFER = 2048  # picows's default (16 KiB) is allocated up front per socket
MAX_CONCURRENT = 400  # cycles in flight at once, at most
IDLE_MAX = 15_000


# -- servers ----------------------------------------------------------------------


def _serve_uvicorn(port: int, starlette: bool) -> None:
    import uvicorn

    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b"ok"})
            await send({"type": "websocket.close", "code": 1000})

    async def with_starlette(scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.websockets import WebSocket

        if scope["type"] != "websocket":
            return
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        data = await ws.receive_bytes()
        await ws.send_bytes(data)
        await ws.close(1000)

    uvicorn.run(
        with_starlette if starlette else bare,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="off",
    )


def _serve_websockets(port: int) -> None:
    import uvloop
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        data = await ws.recv()
        await ws.send(data)
        await ws.close(1000)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
            await asyncio.get_running_loop().create_future()

    uvloop.run(main())


def _serve_aiohttp(port: int) -> None:
    import uvloop
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=False)
        await ws.prepare(request)
        message = await ws.receive()
        if message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
        await ws.close(code=1000)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _serve_picows(port: int, aiofastnet: bool) -> None:
    import uvloop
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Bare(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.CLOSE:
                if not transport.is_close_frame_sent:
                    transport.send_close(WSCloseCode.OK)
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT):
                transport.send(frame.msg_type, frame.get_payload_as_bytes())
                transport.send_close(WSCloseCode.OK)

    async def main() -> None:
        server = await ws_create_server(
            lambda _request: Bare(),
            "127.0.0.1",
            port,
            enable_auto_pong=True,
            max_frame_size=64 * 1024,
            read_buffer_init_size=PICOWS_READ_BUFFER,
            use_aiofastnet=aiofastnet,
        )
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def _serve_sansio(port: int) -> None:
    import uvloop
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    class Bare(asyncio.Protocol):
        def __init__(self) -> None:
            self.ws = ServerProtocol(max_size=64 * 1024)
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

        def data_received(self, data: bytes) -> None:
            ws = self.ws
            ws.receive_data(data)
            for event in ws.events_received():
                if isinstance(event, Request):
                    ws.send_response(ws.accept(event))
                elif isinstance(event, Frame) and event.opcode in (Opcode.BINARY, Opcode.TEXT):
                    ws.send_binary(event.data)
                    ws.send_close(1000)
            self.flush()

        def eof_received(self) -> bool | None:
            self.ws.receive_eof()
            self.flush()
            return None

        def flush(self) -> None:
            assert self.transport is not None
            for data in self.ws.data_to_send():
                if data:
                    self.transport.write(data)
                else:  # the end of the stream: the server closes the TCP connection
                    self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Bare, "127.0.0.1", port, backlog=2048)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def _serve_foyer(port: int) -> None:
    import functools

    import uvicorn

    from protocol.codec import CODECS, JSON
    from server.lobby.connection import Connection, SocketLimits
    from server.lobby.upgrade import Refused, UpgradeRequest, refusal, switching, take_over
    from server.ops.front_protocol import FrontProtocol

    tasks: set[asyncio.Task[None]] = set()

    async def bare(conn: Connection) -> None:
        frame = await conn.receive()
        if frame is not None:
            conn.send_frame(frame)
        conn.close()

    class BareGate:
        def upgrade(
            self,
            transport: asyncio.Transport,
            request: UpgradeRequest,
            trailing: bytes = b"",
            registry: Any = None,
        ) -> None:
            try:
                answer = switching(request, None)
            except Refused as exc:
                transport.write(refusal(exc))
                transport.close()
                return
            conn = Connection(CODECS[JSON], SocketLimits(max_size=64 * 1024))
            take_over(transport, conn, answer, registry)
            task = asyncio.get_running_loop().create_task(bare(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    class App:
        gate = BareGate()

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            return None

    uvicorn.run(
        App(),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=cast("type[asyncio.Protocol]", functools.partial(FrontProtocol)),
        ws="websockets-sansio",
        log_level="warning",
        lifespan="off",
    )


def serve(kind: str, port: int) -> None:
    if kind in ("uvicorn-starlette", "uvicorn"):
        _serve_uvicorn(port, starlette=kind == "uvicorn-starlette")
    elif kind == "websockets":
        _serve_websockets(port)
    elif kind in ("picows", "picows-aiofastnet"):
        _serve_picows(port, aiofastnet=kind == "picows-aiofastnet")
    elif kind == "websockets-sansio-protocol":
        _serve_sansio(port)
    elif kind == "foyer":
        _serve_foyer(port)
    else:
        _serve_aiohttp(port)


# -- the driver -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.socket_layers", "--serve", kind, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # bounded
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} did not start")


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _cycle(url: str) -> float:
    from websockets.asyncio.client import connect

    start = time.perf_counter()
    async with connect(url, compression=None, ping_interval=None, open_timeout=10) as ws:
        await ws.send(b"knock")
        await asyncio.wait_for(ws.recv(), 10)
    return time.perf_counter() - start


async def _paced(rate: float, duration: float, job: Callable[[], Awaitable[float]]) -> list[float]:
    """``job`` started ``rate`` times a second for ``duration`` seconds (bounded
    in flight); the times of those that finished."""
    times: list[float] = []
    gate = asyncio.Semaphore(MAX_CONCURRENT)

    async def one() -> None:
        async with gate:
            with contextlib.suppress(Exception):
                times.append(await job())

    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    for i in range(int(rate * duration)):  # bounded in count
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.wait(tasks, timeout=30)
    return times


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _idle(url: str, count: int) -> list[Any]:
    from websockets.asyncio.client import connect

    held: list[Any] = []
    for start in range(0, count, 200):  # bounded
        batch = [
            connect(url, compression=None, ping_interval=None, open_timeout=10)
            for _ in range(start, min(count, start + 200))
        ]
        held += await asyncio.gather(*(c.__aenter__() for c in batch), return_exceptions=True)
    return [h for h in held if not isinstance(h, BaseException)]


async def measure(kind: str, rates: list[float], duration: float, idle: int) -> dict[str, Any]:
    proc, port = _start(kind)
    path = "/ws"
    url = f"ws://127.0.0.1:{port}{path}"
    out: dict[str, Any] = {"candidate": kind, "rates": []}
    try:
        await _paced(100, 1, lambda: _cycle(url))  # warm up
        for rate in rates:
            cpu = _cpu(proc.pid)
            times = await _paced(rate, duration, lambda: _cycle(url))
            used = _cpu(proc.pid) - cpu
            out["rates"].append(
                {
                    "rate": rate,
                    "cycles": len(times),
                    "server_us_per_cycle": round(1e6 * used / max(len(times), 1), 1),
                    "p50_ms": round(1000 * _percentile(times, 0.5), 2),
                    "p99_ms": round(1000 * _percentile(times, 0.99), 2),
                }
            )
        if idle:
            await asyncio.sleep(0.5)
            before = psutil.Process(proc.pid).memory_info().rss
            held = await _idle(url, idle)
            await asyncio.sleep(1.0)
            after = psutil.Process(proc.pid).memory_info().rss
            out["idle_open"] = len(held)
            out["idle_kib_per_socket"] = round((after - before) / 1024 / max(len(held), 1), 1)
            await asyncio.gather(*(h.close() for h in held), return_exceptions=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.socket_layers", description=__doc__)
    parser.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument("--rate", type=float, nargs="+", default=[500.0, 2000.0])
    parser.add_argument("--reverse", action="store_true", help="measure in the reverse order")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=2000, help="idle sockets held (0: skip)")
    parser.add_argument("--serve", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if not 0 <= args.idle <= IDLE_MAX or args.duration > 120 or max(args.rate) > 10_000:
        parser.error(f"--idle at most {IDLE_MAX}, --duration at most 120, --rate at most 10000")
    for kind in reversed(args.candidates) if args.reverse else args.candidates:
        result = asyncio.run(measure(kind, args.rate, args.duration, args.idle))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
