"""The floor: a bare WebSocket relay over Redis pub/sub that speaks just enough of PROTOCOL.md.

The harness drives this relay with the same driver code it points at Foyer, so that every
report can state Foyer's figures as a ratio to what the machine does with nothing but the
transport: picows + redis-py + uvloop, one PUBLISH per knock (pipelined per loop pass),
one pub/sub reader task per process. It stores nothing, checks no token and keeps no
waiting room; a knock is published straight to the host's channel and a reply straight to
the process that holds the guest.

The floor stays honest (issue 11): it runs on the fastest Python WebSocket server measured
here, not on a slow one that would flatter Foyer. ``python -m loadtest.socket_layers --rate
500 --duration 10 --idle 2000`` (bare cycle: connect, upgrade, one frame each way, close;
server CPU per cycle and RSS per idle socket, two runs, the second in reverse order, on a
shared 2-core machine, so expect some noise) gave:

    candidate                          us/cycle    KiB/idle socket
    picows, uvloop transports          344, 398    7.9, 8.5
    picows, aiofastnet transports      378, 418    11.7, 13.3
    asyncio.Protocol + websockets      526, 452    5.1, 5.4
      sans-I/O ServerProtocol
    aiohttp                            486, 526    12.9, 10.8
    websockets' own asyncio server     738, 568    11.8, 8.9
    uvicorn, bare ASGI                 852, 622    18.9, 15.3
    uvicorn + Starlette (Foyer's)      732, 688    19.7, 15.9

(The issue's own measurement agrees on the order: picows 284, aiohttp 313, websockets 444.)
So the relay is a picows listener on uvloop's own transports: every frame is handled in
``on_ws_frame`` and every write goes straight to the transport from that callback or from
the pub/sub reader, with no task per socket. The only tasks are the pub/sub reader, the
publisher and the one that orders SUBSCRIBE/UNSUBSCRIBE (a host's ``welcome`` is sent once
its channel's SUBSCRIBE is on the wire, as before).

Run one relay per port: ``python -m loadtest.relay --port 9001 --redis redis://...``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from loadtest import wire

HOST_CHANNEL = "floor:host:"
PROC_CHANNEL = "floor:proc:"
OUTCOMES = {
    "admit": {"type": "admitted", "mode": "admit"},
    "merge": {"type": "admitted", "mode": "merge"},
    "new_meeting": {"type": "admitted", "mode": "new_meeting"},
    "busy": {"type": "busy"},
    "deny": {"type": "denied"},
}
FIRST_FRAME_TIMEOUT = 5.0  # hello / knock, as the websockets relay's wait_for
READ_BUFFER = 2048  # picows allocates this per socket up front (16 KiB by default); it grows
MAX_FRAME = 64 * 1024
SERVER_PREFERENCE = (wire.SUBPROTOCOLS["msgpack"], wire.SUBPROTOCOLS["json"])


class Publisher:
    """Queues PUBLISHes and sends everything queued in one pipeline per loop pass."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pending: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def publish(self, channel: str, data: bytes) -> None:
        self._pending.append((channel, data))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except Exception as exc:  # keep relaying; the driver counts what is lost
                print(f"relay: publish failed: {exc!r}", flush=True)


class Socket(WSListener):
    """One WebSocket, host device or guest; picows calls it, it writes straight back."""

    def __init__(self, relay: Relay, codec: str, path: str) -> None:
        self.relay = relay
        self.codec = codec
        self.path = path
        self.encode = wire.encoder(codec)
        self.decode = wire.decoder(codec)
        self.transport: WSTransport | None = None
        self.host_id: str | None = None
        self.guest_id: str | None = None
        self.slug = ""
        self._first_frame: asyncio.TimerHandle | None = None

    # -- picows callbacks -----------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.path == "/ws/host" or self.path.startswith("/ws/guest/"):
            self.slug = self.path[len("/ws/guest/") :].split("?")[0]
            self._first_frame = asyncio.get_running_loop().call_later(
                FIRST_FRAME_TIMEOUT, self.close, WSCloseCode.POLICY_VIOLATION
            )
        else:
            self.close(WSCloseCode.POLICY_VIOLATION)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
            self._on_message(self.decode(frame.get_payload_as_bytes()))
        elif kind is WSMsgType.CLOSE:  # answer the close, then drop TCP (the server's side)
            if not transport.is_close_frame_sent:
                code = frame.get_close_code()
                transport.send_close(WSCloseCode.OK if code is WSCloseCode.NO_INFO else code)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._first_frame is not None:
            self._first_frame.cancel()
        if self.host_id is not None:
            self.relay.remove_device(self.host_id, self)
        if self.guest_id is not None:
            self.relay.guests.pop(self.guest_id, None)

    # -- frames -----------------------------------------------------------------------

    def _on_message(self, frame: dict[str, Any]) -> None:
        if self._first_frame is not None:  # hello or knock
            self._first_frame.cancel()
            self._first_frame = None
            if self.path == "/ws/host":
                self.relay.add_device(_jwt_subject(str(frame.get("token", ""))), self)
            elif frame.get("type") == "knock":
                self.relay.knock(self, str(frame.get("name", "")))
            else:
                self.close(WSCloseCode.POLICY_VIOLATION)
        elif self.host_id is not None:
            self._host_frame(frame)
        elif frame.get("type") == "cancel":
            self.close(WSCloseCode.OK)

    def _host_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind in OUTCOMES:
            guest = str(frame["guest"])
            outcome = dict(OUTCOMES[kind])
            if frame.get("message") is not None:
                outcome["message"] = frame["message"]
            owner = guest.split(".", 1)[0]
            self.relay.publisher.publish(
                PROC_CHANNEL + owner,
                wire.encode_msgpack({"guest": guest, "outcome": outcome}),
            )
            if "ref" in frame:
                self.send(self.encode({"type": "ack", "ref": frame["ref"]}))
        elif kind == "ping":
            self.send(self.encode({"type": "pong"}))

    # -- writes, straight to the transport ----------------------------------------------

    def send(self, data: bytes | str) -> None:
        """Write a frame now, from whatever callback we are in; no task.

        A slow consumer only grows the transport's buffer here; the floor accepts that.
        """
        transport = self.transport
        if transport is None or transport.is_close_frame_sent or transport.is_disconnected:
            return
        if isinstance(data, str):
            transport.send(WSMsgType.TEXT, data.encode())
        else:
            transport.send(WSMsgType.BINARY, data)

    def close(self, code: WSCloseCode) -> None:
        """Send a close frame; TCP is dropped when the client's close frame comes back."""
        transport = self.transport
        if transport is not None and not transport.is_close_frame_sent:
            transport.send_close(code)


class Relay:
    """One relay process: host devices by host id, waiting guests by guest id."""

    def __init__(self, name: str, redis_url: str) -> None:
        self.name = name
        self.redis_url = redis_url
        self.hosts: dict[str, set[Socket]] = {}
        self.guests: dict[str, Socket] = {}
        self._ids = itertools.count()
        self._client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub()
        self.publisher = Publisher(self._client)
        # SUBSCRIBE / UNSUBSCRIBE in the order the callbacks asked for them, by one task
        self._subscriptions: asyncio.Queue[tuple[bool, str, Callable[[], None] | None]] = (
            asyncio.Queue()
        )

    async def run(self, host: str, port: int) -> None:
        await self._pubsub.subscribe(PROC_CHANNEL + self.name)
        reader = asyncio.create_task(self._read_pubsub())
        subscriber = asyncio.create_task(self._subscribe_in_order())
        self.publisher.start()
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
        server = await ws_create_server(
            self._route,
            host,
            port,
            enable_auto_pong=True,
            max_frame_size=MAX_FRAME,
            read_buffer_init_size=READ_BUFFER,
            use_aiofastnet=False,  # uvloop's own transports: cheaper per cycle (socket_layers)
            backlog=2048,  # uvicorn's default, so connect storms compare fairly
        )
        try:
            print(f"relay {self.name} ready on {host}:{port}", flush=True)
            await stop
        finally:
            server.close()
            for task in (reader, subscriber):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.publisher.stop()
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._client.aclose()

    def _route(self, request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        """The upgrade: /healthz answers 200; a WebSocket must offer one of our subprotocols."""
        path = request.path.decode("latin-1")
        if path == "/healthz":
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_ok_response(b"ok\n"), None
            )
        offered = {
            part.strip()
            for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for part in value.split(",")
        }
        chosen = next((p for p in SERVER_PREFERENCE if p in offered), None)
        if chosen is None:  # as the websockets server did: 400, missing subprotocol
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(400, b"missing subprotocol\n"), None
            )
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response({"Sec-WebSocket-Protocol": chosen}),
            Socket(self, wire.codec_of(chosen), path),
        )

    # -- hosts and guests -----------------------------------------------------------

    def add_device(self, host_id: str, ws: Socket) -> None:
        ws.host_id = host_id
        devices = self.hosts.setdefault(host_id, set())
        first = not devices
        devices.add(ws)
        welcome = ws.encode(
            {
                "type": "welcome",
                "host": host_id,
                "state": "available",
                "waiting": [],
                "policy": {"locked": False, "bypass": "nobody"},
            }
        )
        if first:  # welcome once the SUBSCRIBE is on the wire
            self._subscriptions.put_nowait((True, HOST_CHANNEL + host_id, lambda: ws.send(welcome)))
        else:
            ws.send(welcome)

    def remove_device(self, host_id: str, ws: Socket) -> None:
        devices = self.hosts.get(host_id)
        if devices is None:
            return
        devices.discard(ws)
        if not devices:
            del self.hosts[host_id]
            self._subscriptions.put_nowait((False, HOST_CHANNEL + host_id, None))

    def knock(self, ws: Socket, name: str) -> None:
        guest_id = f"{self.name}.{next(self._ids)}"
        ws.guest_id = guest_id
        self.guests[guest_id] = ws
        ws.send(
            ws.encode(
                {
                    "type": "waiting",
                    "guest": guest_id,
                    "resume": "",
                    "position": 1,
                    "host_online": True,
                }
            )
        )
        self.publisher.publish(
            HOST_CHANNEL + ws.slug,
            wire.encode_msgpack(
                {
                    "type": "join_request",
                    "guest": {
                        "id": guest_id,
                        "name": name,
                        "verified": False,
                        "label": name + " (Guest)",
                        "knocked_at": int(time.time() * 1000),
                        "options": {},
                    },
                    "position": 1,
                    "host_state": "available",
                }
            ),
        )

    # -- pub/sub ----------------------------------------------------------------------

    async def _subscribe_in_order(self) -> None:
        while True:
            subscribe, channel, then = await self._subscriptions.get()
            try:
                if subscribe:
                    await self._pubsub.subscribe(channel)
                else:
                    await self._pubsub.unsubscribe(channel)
            except Exception as exc:
                print(f"relay: (un)subscribe failed: {exc!r}", flush=True)
            if then is not None:
                then()

    async def _read_pubsub(self) -> None:
        """The one pub/sub reader of this process: fan join_requests out, hand outcomes over."""
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except Exception as exc:
                print(f"relay: pubsub read failed: {exc!r}", flush=True)
                await asyncio.sleep(0.1)
                continue
            if message is None:
                continue
            channel = message["channel"].decode()
            payload: dict[str, Any] = wire.decode_msgpack(message["data"])
            if channel.startswith(HOST_CHANNEL):
                self._fan_out(channel[len(HOST_CHANNEL) :], payload)
            else:
                self._deliver_outcome(payload)

    def _fan_out(self, host_id: str, payload: dict[str, Any]) -> None:
        devices = self.hosts.get(host_id)
        if not devices:
            return
        encoded: dict[str, bytes | str] = {}  # encode once per codec, not once per device
        for ws in list(devices):
            data = encoded.get(ws.codec)
            if data is None:
                data = encoded[ws.codec] = ws.encode(payload)
            ws.send(data)

    def _deliver_outcome(self, payload: dict[str, Any]) -> None:
        ws = self.guests.pop(payload["guest"], None)
        if ws is None:
            return
        ws.send(ws.encode(payload["outcome"]))
        ws.close(WSCloseCode.OK)  # PROTOCOL.md: close 1000 after the outcome


def _jwt_subject(token: str) -> str:
    """The ``sub`` of a JWT, unchecked: the floor does no auth, it only needs the host id."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["sub"])
    except (IndexError, ValueError, KeyError):
        return token


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default=os.environ.get("FOYER_REDIS_URL", ""))
    parser.add_argument("--name", default=None, help="process name used in guest ids")
    args = parser.parse_args(argv)
    relay = Relay(args.name or str(args.port), args.redis)
    uvloop.run(relay.run(args.host, args.port))


if __name__ == "__main__":
    main()
