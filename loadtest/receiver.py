"""A webhook receiver for load runs: a real HTTP server on 127.0.0.1 that
answers 200 after sleeping ``sleep`` seconds (a slow integrator), counting what
it got. ``--webhook-sleep`` starts one and points the spawned Foyer processes
at it, to show that a slow receiver changes no knock latency."""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SleepingReceiver:
    def __init__(self, sleep: float) -> None:
        self.sleep = sleep
        self.received = 0
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver._stop.wait(receiver.sleep)  # ends early when the run is over
                with receiver._lock:
                    receiver.received += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def env(self) -> dict[str, str]:
        """What the Foyer processes need to deliver here."""
        return {
            "FOYER_WEBHOOK_URL": self.url,
            "FOYER_WEBHOOK_SECRET": self.secret,
            "FOYER_WEBHOOK_ALLOW": "127.0.0.1",
            "FOYER_WEBHOOK_TIMEOUT": str(max(10.0, self.sleep + 5)),
        }


@contextlib.contextmanager
def sleeping_receiver(sleep: float) -> Iterator[SleepingReceiver]:
    receiver = SleepingReceiver(sleep)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver._stop.set()
        receiver.server.shutdown()
        receiver.server.server_close()
