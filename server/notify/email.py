"""Email to a host who is away when someone waits, coalesced.

A knock while none of the host's devices is online schedules one email a
short delay later (``FOYER_MAIL_DELAY``), so a burst of knocks makes one
email that lists everyone still waiting. After an email the host gets no
other for ``FOYER_MAIL_COOLDOWN``. Both the schedule and the cool-down live
in Redis, so any process may send and exactly one does. The email never
carries a token: it links to the console.
"""

from __future__ import annotations

import html
import logging
import time
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

if TYPE_CHECKING:
    from server.node import Node

log = logging.getLogger("foyer.email")

MAIL_KEY = "foyer:mail-due"


class Mailer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return bool(self.node.settings.smtp_url)

    def knocked(self, host: str, host_online: bool) -> None:
        """A guest is waiting: schedule an email if nobody is there to see it."""
        if self.enabled and not host_online:
            due = int((time.time() + self.node.settings.mail_delay) * 1000)
            self.node.store.batch.fire("ZADD", MAIL_KEY, "NX", due, host)

    async def send_due(self) -> int:
        """Send the emails whose time has come (called by the Node's loop)."""
        if not self.enabled:
            return 0
        store = self.node.store
        due = await store.batch.script("due", [MAIL_KEY], [int(time.time() * 1000), 50])
        sent = 0
        for raw in due:
            host = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                sent += await self._maybe_send(host)
            except Exception as exc:
                log.warning("email to host %s failed: %s", host, type(exc).__name__)
        return sent

    async def _maybe_send(self, host: str) -> int:
        store, settings = self.node.store, self.node.settings
        record = await store.get_host(host)
        if record is None or not record.get("email"):
            return 0
        if not record["settings"].get("email_notifications", True):
            return 0
        if await store.host_online(host):
            return 0  # the host's devices showed the knocks
        waiting = await store.waiting(host)
        if not waiting:
            return 0
        cooldown_ms = int(settings.mail_cooldown * 1000)
        key = f"{store.tag(host)}:mailed"
        if not await store.redis.set(key, "1", nx=True, px=cooldown_ms):
            left = await store.redis.pttl(key)
            later = int(time.time() * 1000) + max(int(left), 1000)
            store.batch.fire("ZADD", MAIL_KEY, "NX", later, host)  # try again after it
            return 0
        await self.deliver(compose(record, waiting, settings.mail_from, self.console_url()))
        self.sent += 1
        return 1

    def console_url(self) -> str:
        settings = self.node.settings
        base = (settings.public_url or settings.listen_url or "http://127.0.0.1:8000").rstrip("/")
        return f"{base}/host"

    async def deliver(self, message: EmailMessage) -> None:
        url = urlsplit(self.node.settings.smtp_url or "")
        tls = url.scheme == "smtps"
        await aiosmtplib.send(
            message,
            hostname=url.hostname or "127.0.0.1",
            port=url.port or (465 if tls else 25),
            use_tls=tls,
            start_tls=True if "starttls=true" in (url.query or "") else False,
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            timeout=10,
        )


def compose(
    record: dict[str, Any], waiting: list[dict[str, Any]], sender: str, console: str
) -> EmailMessage:
    """One email listing everyone waiting, oldest first (text and HTML)."""
    count = len(waiting)
    first = waiting[0]["label"]
    subject = f"{first} is waiting for you" if count == 1 else f"{count} guests are waiting for you"
    lines, items = [], []
    now = time.time() * 1000
    for guest in waiting:
        minutes = max(0, int((now - guest["knocked_at"]) / 60000))
        topic = guest.get("options", {}).get("title", "")
        who = guest["label"] + (f" <{guest['email']}>" if guest.get("email") else "")
        lines.append(f"- {who}, waiting {minutes} min: {topic}")
        items.append(f"<li>{html.escape(who)}, waiting {minutes} min: {html.escape(topic)}</li>")
    text = (
        f"Hello {record['name']},\n\n{subject} on your personal link.\n\n"
        + "\n".join(lines)
        + f"\n\nOpen your console to answer: {console}\n"
    )
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = record["email"]
    message.set_content(text)
    message.add_alternative(
        f"<p>Hello {html.escape(record['name'])},</p><p>{html.escape(subject)} on your "
        f'personal link.</p><ul>{"".join(items)}</ul><p><a href="{html.escape(console)}">'
        "Open your console to answer</a></p>",
        subtype="html",
    )
    return message
