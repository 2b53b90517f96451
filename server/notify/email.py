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
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from server.storage.hosts import HostRecord, HostStore
from server.storage.store import Store
from server.storage.values import now_ms

log = logging.getLogger("foyer.email")


@dataclass(frozen=True, slots=True)
class MailConfig:
    smtp_url: str | None
    sender: str
    delay_s: float
    cooldown_s: float
    console_url: str


class Mailer:
    def __init__(self, store: Store, hosts: HostStore, config: MailConfig) -> None:
        self._store = store
        self._hosts = hosts
        self.config = config

    @property
    def enabled(self) -> bool:
        return bool(self.config.smtp_url)

    def knocked(self, host: str, host_online: bool) -> None:
        """A guest is waiting: schedule an email if nobody is there to see it."""
        if self.enabled and not host_online:
            self._store.schedule_mail(host, int((time.time() + self.config.delay_s) * 1000))

    async def send_due(self) -> int:
        """Send the emails whose time has come (called by the Node's loop). An
        email that fails is tried again later: its claim runs out."""
        if not self.enabled:
            return 0
        # A claim outlasts the gathering delay, so a knock meanwhile re-schedules.
        retry_ms = int(max(1.0, 2 * self.config.delay_s) * 1000)
        claimed = await self._store.claim_mail(retry_ms)
        sent = 0
        done: list[tuple[str, str]] = []
        for host, claim in claimed:
            try:
                sent += await self._maybe_send(host)
                done.append((host, claim))
            except Exception as exc:
                log.warning("email to host %s failed: %s", host, type(exc).__name__)
        await self._store.mail_done(done)
        return sent

    async def _maybe_send(self, host: str) -> int:
        record = await self._hosts.get_host(host)
        if record is None or not record.get("email"):
            return 0
        if not record["settings"].get("email_notifications", True):
            return 0
        snapshot = await self._store.snapshot(host)
        if snapshot.online:
            return 0  # the host's devices showed the knocks
        if not snapshot.queue:
            return 0
        left = await self._store.mail_cooldown_left(host)
        if left:
            self._store.reschedule_mail(host, now_ms() + max(left, 1000))  # after the cool-down
            return 0
        try:
            message = compose(record, snapshot.queue, self.config.sender, self.config.console_url)
        except ValueError as exc:  # data no header can carry: retrying will not help
            log.warning("cannot compose an email to host %s: %s", host, type(exc).__name__)
            return 0
        await self.deliver(message)
        # The cool-down starts only once the email went out: a failed send is retried.
        await self._store.start_mail_cooldown(host, int(self.config.cooldown_s * 1000))
        return 1

    async def deliver(self, message: EmailMessage) -> None:
        url = urlsplit(self.config.smtp_url or "")
        tls = url.scheme == "smtps"
        await aiosmtplib.send(
            message,
            hostname=url.hostname or "127.0.0.1",
            port=url.port or (465 if tls else 25),
            use_tls=tls,
            start_tls="starttls=true" in (url.query or ""),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            timeout=10,
        )


def compose(
    record: HostRecord, waiting: list[dict[str, Any]], sender: str, console: str
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
