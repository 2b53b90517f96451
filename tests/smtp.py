"""A real SMTP server for the tests (aiosmtpd) that keeps what it is given."""

from __future__ import annotations

import contextlib
import email
import email.policy
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from server.ops.embedded import free_port


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


@contextlib.contextmanager
def smtp_server(port: int | None = None) -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on 127.0.0.1 (a free port unless given) and its inbox."""
    inbox, port = Inbox(), port or free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
