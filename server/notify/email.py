"""Email to a host when someone waits, coalesced, with one-click replies.

A knock schedules one email a short delay later (``FOYER_MAIL_DELAY``), so a
burst of knocks makes one email that lists everyone still waiting; when it
comes due, the host's ``email_mode`` decides: ``away`` (the default: only if
no device of the host is online), ``always`` or ``never``. After an email the
host gets no other for ``FOYER_MAIL_COOLDOWN``. The schedule and the
cool-down live in Redis, so any process may send and exactly one does.

Each waiting guest gets signed, expiring, single-use links (Admit, New
meeting, Busy; ``server.access.reply_links``) that open a confirmation page;
the email carries no host token. With no SMTP server configured (the
embedded default), each email is written as an ``.eml`` file to the outbox
folder instead, so a newcomer sees what would be sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

from server import i18n
from server.access.reply_links import ReplyLinks
from server.hosts.settings import email_mode
from server.metrics import Metrics
from server.notify.email_message import EMAIL_GUESTS, compose
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
    base_url: str = "http://127.0.0.1:8000"  # where the reply links point
    outbox: Path | None = None  # with no SMTP server: .eml files go here


class Mailer:
    def __init__(
        self,
        store: Store,
        hosts: HostStore,
        links: ReplyLinks,
        config: MailConfig,
        metrics: Metrics,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._hosts = hosts
        self._links = links
        self.config = config

    @property
    def enabled(self) -> bool:
        return bool(self.config.smtp_url or self.config.outbox)

    def will_email(self, host_online: bool, record: HostRecord) -> bool:
        """Whether a guest waiting now gets the host an email: mail is set up,
        the host has an address and its ``email_mode`` wants one now. The guest
        page says so only when it is true (``waiting.host_notified``)."""
        mode = email_mode(record["settings"])
        wanted = mode == "always" or (mode == "away" and not host_online)
        return wanted and self.enabled and bool(record.get("email"))

    def knocked(self, host: str, host_online: bool, record: HostRecord) -> bool:
        """A guest is waiting: schedule an email if ``will_email`` (queued with
        the knock's own pipeline, no round trip; the sweep checks again when it
        comes due). Returns ``will_email``."""
        if not self.will_email(host_online, record):
            return False
        self._store.schedule_mail(host, int((time.time() + self.config.delay_s) * 1000))
        return True

    def reply_url(self, host: str, guest: str, action: str, lang: str | None = None) -> str:
        """A one-click link; ``lang``: the page speaks the email's language (else
        the language of the browser that opens it)."""
        token = self._links.make(host, guest, action)
        query = f"?lang={lang}" if lang else ""
        return f"{self.config.base_url.rstrip('/')}/reply/{token}{query}"

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
                self._metrics.email("failed")
        await self._store.mail_done(done)
        return sent

    async def _maybe_send(self, host: str) -> int:
        record = await self._hosts.get_host(host)
        if record is None or not record.get("email"):
            return 0
        mode = email_mode(record["settings"])
        if mode == "never":
            return 0
        snapshot = await self._store.snapshot(host, limit=EMAIL_GUESTS)
        if mode == "away" and snapshot.online:
            return 0  # the host's devices showed the knocks
        if not snapshot.queue:
            return 0
        left = await self._store.mail_cooldown_left(host)
        if left:
            self._store.reschedule_mail(host, now_ms() + max(left, 1000))  # after the cool-down
            return 0
        # Set by the host: the pages follow the email; unset: the browser decides.
        chosen = record["settings"].get("language")
        lang = chosen if chosen in i18n.LANGUAGES else None
        try:
            message = compose(
                record,
                snapshot.queue,
                self.config.sender,
                self.config.console_url,
                link=lambda guest, action: self.reply_url(host, guest, action, lang),
                total=len(snapshot.ids),
            )
        except ValueError as exc:  # data no header can carry: retrying will not help
            log.warning("cannot compose an email to host %s: %s", host, type(exc).__name__)
            self._metrics.email("failed")
            return 0
        await self.deliver(message)
        self._metrics.email("sent")
        # The cool-down starts only once the email went out: a failed send is retried.
        await self._store.start_mail_cooldown(host, int(self.config.cooldown_s * 1000))
        return 1

    async def deliver(self, message: EmailMessage) -> None:
        if not self.config.smtp_url:
            self._write_to_outbox(message)
            return
        url = urlsplit(self.config.smtp_url)
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

    def _write_to_outbox(self, message: EmailMessage) -> None:
        """No SMTP server: the email becomes a file a newcomer can open."""
        assert self.config.outbox is not None
        self.config.outbox.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{now_ms() % 1000:03d}-{message['To']}.eml"
        path = self.config.outbox / name.replace("/", "_")
        path.write_bytes(bytes(message))
        log.info("email written to %s (no FOYER_SMTP_URL)", path)
