"""A real HTTP receiver for webhooks, on 127.0.0.1, in a thread: records every
request with what it was answered; ``answer`` decides each status."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
WAIT = 30.0  # seconds any one wait may take on a slow shared machine


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return event

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """A real HTTP server in a thread. ``answer`` decides each request's status
    and headers; every request is recorded with what it was answered."""

    def __init__(self, port: int = 0) -> None:
        self.deliveries: list[Delivery] = []
        self.changed = threading.Condition()
        self.answer: Callable[[dict[str, Any]], tuple[int, dict[str, str]]] = lambda e: (200, {})
        self.hold = threading.Event()  # while cleared, a request flagged "hold" waits
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra = receiver.answer(json.loads(body))
                if status == 0:  # hold the request open, as a receiver that hangs
                    with receiver.changed:
                        receiver.deliveries.append(Delivery(headers, body, 0))
                        receiver.changed.notify_all()
                    receiver.hold.wait(WAIT)
                    status = 503
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()
                with receiver.changed:
                    receiver.deliveries.append(Delivery(headers, body, status))
                    receiver.changed.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def of(self, host: str) -> list[Delivery]:
        with self.changed:
            return [d for d in self.deliveries if d.event["data"]["host"] == host]

    def delivered(self, host: str) -> dict[str, Delivery]:
        """De-duplicated by ``webhook-id``: the deliveries answered 2xx."""
        return {d.id: d for d in self.of(host) if 200 <= d.status < 300}

    def wait(self, ready: Callable[[], bool]) -> bool:
        with self.changed:
            return self.changed.wait_for(ready, WAIT)

    async def until(self, ready: Callable[[], bool]) -> None:
        assert await asyncio.to_thread(self.wait, ready), self.deliveries

    def types(self, host: str) -> list[str]:
        return sorted(d.event["type"] for d in self.delivered(host).values())


@contextlib.contextmanager
def receiving(port: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(port)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.hold.set()
        receiver.server.shutdown()
        receiver.server.server_close()


@contextlib.contextmanager
def reserved_port() -> Iterator[tuple[int, Callable[[], None]]]:
    """A port nothing listens on (connections to it are refused), kept bound
    meanwhile: a port merely found free was once taken as the local port of
    some outgoing connection during a minute-long outage, and the receiver
    could not bind it. ``release()`` frees it just before a receiver binds it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1]), sock.close
    finally:
        sock.close()
