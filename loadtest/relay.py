"""The floor: a bare WebSocket relay over Redis pub/sub that speaks just enough of PROTOCOL.md.

The harness drives this relay with the same driver code it points at Foyer, so that every
report can state Foyer's figures as a ratio to what the machine does with nothing but the
transport: websockets + redis-py + uvloop, one PUBLISH per knock (pipelined per loop pass),
one pub/sub reader task per process. It stores nothing, checks no token and keeps no
waiting room; a knock is published straight to the host's channel and a reply straight to
the process that holds the guest.

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
from typing import Any

import redis.asyncio as aioredis
import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

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


class Relay:
    """One relay process: host devices by host id, waiting guests by guest id."""

    def __init__(self, name: str, redis_url: str) -> None:
        self.name = name
        self.redis_url = redis_url
        self.hosts: dict[str, set[ServerConnection]] = {}
        self.guests: dict[str, ServerConnection] = {}
        self.codecs: dict[ServerConnection, str] = {}
        self._ids = itertools.count()
        self._client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub()
        self.publisher = Publisher(self._client)

    async def run(self, host: str, port: int) -> None:
        await self._pubsub.subscribe(PROC_CHANNEL + self.name)
        reader = asyncio.create_task(self._read_pubsub())
        self.publisher.start()
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
        try:
            async with serve(
                self._handle,
                host,
                port,
                subprotocols=[wire.SUBPROTOCOLS["msgpack"], wire.SUBPROTOCOLS["json"]],  # type: ignore[list-item]
                compression=None,
                ping_interval=None,
                max_size=64 * 1024,
                process_request=_healthz,
                backlog=2048,  # uvicorn's default, so connect storms compare fairly
            ):
                print(f"relay {self.name} ready on {host}:{port}", flush=True)
                await stop
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self.publisher.stop()
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._client.aclose()

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
            codec = self.codecs[ws]
            data = encoded.get(codec)
            if data is None:
                data = encoded[codec] = wire.encoder(codec)(payload)
            _send_now(ws, data)

    def _deliver_outcome(self, payload: dict[str, Any]) -> None:
        ws = self.guests.pop(payload["guest"], None)
        if ws is None:
            return
        _send_now(ws, wire.encoder(self.codecs[ws])(payload["outcome"]))
        if ws.protocol.state is State.OPEN:  # PROTOCOL.md: close 1000 after the outcome
            ws.protocol.send_close(1000)
            ws.send_data()

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        codec = wire.codec_of(ws.subprotocol)
        self.codecs[ws] = codec
        try:
            if path == "/ws/host":
                await self._host(ws, codec)
            elif path.startswith("/ws/guest/"):
                await self._guest(ws, codec, path[len("/ws/guest/") :].split("?")[0])
            else:
                await ws.close(1008)
        except ConnectionClosed:
            pass
        finally:
            del self.codecs[ws]

    async def _host(self, ws: ServerConnection, codec: str) -> None:
        decode, encode = wire.decoder(codec), wire.encoder(codec)
        hello = decode(await asyncio.wait_for(ws.recv(), 5.0))
        host_id = _jwt_subject(str(hello.get("token", "")))
        devices = self.hosts.setdefault(host_id, set())
        if not devices:
            await self._pubsub.subscribe(HOST_CHANNEL + host_id)
        devices.add(ws)
        try:
            await ws.send(
                encode(
                    {
                        "type": "welcome",
                        "host": host_id,
                        "state": "available",
                        "waiting": [],
                        "policy": {"locked": False, "bypass": "nobody"},
                    }
                )
            )
            async for data in ws:
                frame = decode(data)
                kind = frame.get("type")
                if kind in OUTCOMES:
                    guest = str(frame["guest"])
                    outcome = dict(OUTCOMES[kind])
                    if frame.get("message") is not None:
                        outcome["message"] = frame["message"]
                    owner = guest.split(".", 1)[0]
                    self.publisher.publish(
                        PROC_CHANNEL + owner,
                        wire.encode_msgpack({"guest": guest, "outcome": outcome}),
                    )
                    if "ref" in frame:
                        await ws.send(encode({"type": "ack", "ref": frame["ref"]}))
                elif kind == "ping":
                    await ws.send(encode({"type": "pong"}))
        finally:
            devices.discard(ws)
            if not devices:
                del self.hosts[host_id]
                await self._pubsub.unsubscribe(HOST_CHANNEL + host_id)

    async def _guest(self, ws: ServerConnection, codec: str, slug: str) -> None:
        decode, encode = wire.decoder(codec), wire.encoder(codec)
        knock = decode(await asyncio.wait_for(ws.recv(), 5.0))
        if knock.get("type") != "knock":
            await ws.close(1008)
            return
        guest_id = f"{self.name}.{next(self._ids)}"
        self.guests[guest_id] = ws
        name = str(knock.get("name", ""))
        try:
            await ws.send(
                encode(
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
                HOST_CHANNEL + slug,
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
            async for data in ws:
                if decode(data).get("type") == "cancel":
                    await ws.close(1000)
        finally:
            self.guests.pop(guest_id, None)


def _send_now(ws: ServerConnection, data: bytes | str) -> None:
    """Write a frame from a callback, with no task: straight through the sans-I/O protocol.

    A slow consumer only grows the transport's buffer here; the floor accepts that.
    """
    if ws.protocol.state is not State.OPEN:
        return
    if isinstance(data, str):
        ws.protocol.send_text(data.encode())
    else:
        ws.protocol.send_binary(data)
    ws.send_data()


def _jwt_subject(token: str) -> str:
    """The ``sub`` of a JWT, unchecked: the floor does no auth, it only needs the host id."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["sub"])
    except (IndexError, ValueError, KeyError):
        return token


def _healthz(connection: ServerConnection, request: Any) -> Any:
    if request.path == "/healthz":
        return connection.respond(200, "ok\n")
    return None


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
