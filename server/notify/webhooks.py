"""Webhooks, the Standard Webhooks way: each lifecycle event the scripts put
in a host's outbox (``server.storage.outbox``) is POSTed, signed, to the
deployment's endpoint (``FOYER_WEBHOOK_URL``), at least once.

Nothing here is on the knock path: the knock's script appends to the outbox
in the same atomic step as its publish, and this worker, in every process,
delivers later. The ``webhook-id`` is derived from the host and the outbox
entry's id, so it is stable across retries and processes and a receiver
de-duplicates on it. 2xx is delivered; 429/503 retry after ``Retry-After``;
410 disables the endpoint; anything else (or no answer within the timeout)
retries with exponential backoff and jitter, until
``FOYER_WEBHOOK_ATTEMPTS`` attempts or ``FOYER_WEBHOOK_MAX_AGE`` seconds, then
the delivery goes to the host's dead-letter list.

Server-side request forgery: a target that resolves to a private, loopback,
link-local or otherwise reserved address is refused unless its host name or
address is allow-listed (``FOYER_WEBHOOK_ALLOW``, host names or CIDRs).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from protocol.events import Hook
from server.storage.outbox import READ_LIMIT, Entry, Outbox
from server.storage.values import now_ms, unpack

log = logging.getLogger("foyer.webhooks")

MAX_RETRY_AFTER_S = 24 * 3600
_PACKED = frozenset({"card", "outcome", "meeting"})  # fields the scripts store as msgpack
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedTarget(ValueError):
    """A webhook URL this deployment will not call (scheme, or a private address)."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str | None = None
    secret: str | None = None  # whsec_<base64>
    allow: tuple[str, ...] = ()  # host names, addresses or CIDRs private targets may use
    attempts: int = 15
    max_age_s: float = 24 * 3600.0
    backoff_s: float = 5.0  # the first retry's delay; doubles per attempt
    backoff_max_s: float = 3600.0
    timeout_s: float = 10.0
    claim_s: float = 60.0  # a crashed process's claim on a host runs out after this
    _networks: tuple[_Network, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        nets: list[_Network] = []
        for item in self.allow:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue  # a host name
        object.__setattr__(self, "_networks", tuple(nets))

    def allowed(self, host: str, address: str | None = None) -> bool:
        if host.lower() in (a.lower() for a in self.allow):
            return True
        if address is None:
            return False
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in self._networks)


async def check_target(url: str, config: WebhookConfig) -> None:
    """Raise ``RefusedTarget`` unless ``url`` is http(s) and every address its
    host resolves to is public or allow-listed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedTarget("a webhook URL must be http or https with a host")
    host = parts.hostname
    if config.allowed(host):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedTarget(f"cannot resolve {host}") from exc
    for info in infos:
        address = str(info[4][0])
        ip = ipaddress.ip_address(address)
        if not ip.is_global and not config.allowed(host, address):
            raise RefusedTarget(
                f"{host} resolves to {address}, a private address; allow-list it in "
                "FOYER_WEBHOOK_ALLOW to call it"
            )


def payload(host: str, entry: Entry) -> dict[str, Any]:
    """The Standard Webhooks body: ``{type, timestamp, data}``."""
    data: dict[str, Any] = {"host": host}
    for name, raw in entry.fields.items():
        if name == "type":
            continue
        if name in _PACKED:
            data[name] = unpack(raw) if raw else None
        else:
            data[name] = raw.decode()
    if "position" in data:
        data["position"] = int(data["position"])
    kind = Hook(entry.fields["type"].decode())
    if kind is Hook.RESOLVED:
        outcome = data.pop("outcome", None) or {}
        data["meeting"] = outcome.get("meeting")
        if outcome.get("message"):
            data["message"] = outcome["message"]
    created = datetime.fromtimestamp(entry.created_ms / 1000, UTC)
    return {"type": kind.value, "timestamp": created.isoformat(), "data": data}


def message_id(host: str, entry: Entry) -> str:
    """Stable across retries and processes: the host and the outbox entry id."""
    return f"msg_{host}_{entry.id}"


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_S)


class Webhooks:
    """The delivery worker of one process (the Node runs ``deliver_due``)."""

    def __init__(self, outbox: Outbox, config: WebhookConfig) -> None:
        self._outbox = outbox
        self.config = config
        self._signer = Webhook(config.secret) if config.url and config.secret else None
        self._client: httpx.AsyncClient | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config.url)

    async def start(self) -> None:
        """Check the endpoint (a refused target stops start-up) and open the client."""
        if not self.config.url:
            return
        if not self.config.secret or not self.config.secret.startswith("whsec_"):
            raise ValueError("FOYER_WEBHOOK_SECRET must be set, in whsec_<base64> form")
        await check_target(self.config.url, self.config)
        self._client = httpx.AsyncClient(
            timeout=self.config.timeout_s, follow_redirects=False, trust_env=False
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver_due(self) -> int:
        """Deliver what is due in every host outbox this process can claim; returns
        how many deliveries succeeded. A host whose pass fails keeps its claim,
        which runs out: another pass (here or in another process) takes it."""
        if self._client is None:
            return 0
        claimed = await self._outbox.claim(int(self.config.claim_s * 1000))
        if not claimed:
            return 0
        gone = await self._outbox.gone() == self.config.url
        results = await asyncio.gather(
            *(self._host(host, claim, gone) for host, claim in claimed), return_exceptions=True
        )
        delivered = 0
        for (host, _), result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("webhooks of host %s failed: %s", host, type(result).__name__)
            else:
                delivered += result
        return delivered

    async def _host(self, host: str, claim: str, gone: bool) -> int:
        entries = await self._outbox.entries(host)
        now = now_ms()
        # Stop well inside the claim, so no other process takes this host meanwhile.
        stop_at = now + int(self.config.claim_s * 1000) // 2
        next_ms: int | None = None
        delivered = 0
        for entry in entries:
            if now_ms() >= stop_at:
                next_ms = now_ms()  # the rest in the next pass
                break
            if entry.next_ms > now:
                next_ms = entry.next_ms if next_ms is None else min(next_ms, entry.next_ms)
                continue
            if gone:
                await self._dead(host, entry, "gone")
                continue
            at = await self._attempt(host, entry)
            if at is None:
                delivered += 1
            elif at < 0:
                gone = True
            else:
                next_ms = at if next_ms is None else min(next_ms, at)
        if len(entries) >= READ_LIMIT:
            next_ms = now_ms()  # more behind these
        await self._outbox.release(host, claim, next_ms)
        return delivered

    async def _attempt(self, host: str, entry: Entry) -> int | None:
        """POST one entry: None when it is done with (delivered or dead), -1 when the
        endpoint is gone, else the ms time of its next attempt."""
        assert self._client is not None and self._signer is not None and self.config.url
        body = json.dumps(payload(host, entry), separators=(",", ":"))
        msg_id = message_id(host, entry)
        sent = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(sent.timestamp())),
            "webhook-signature": self._signer.sign(msg_id, sent, body),
        }
        attempts = entry.attempts + 1
        wait_s: float | None = None
        try:
            await check_target(self.config.url, self.config)  # DNS may have changed
            response = await self._client.post(self.config.url, content=body, headers=headers)
        except RefusedTarget as exc:
            log.error("webhook target refused: %s", exc)
            await self._dead(host, entry, "refused", attempts)
            return None
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        else:
            if response.is_success:
                await self._outbox.delivered(host, entry.id)
                return None
            status = str(response.status_code)
            if response.status_code == 410:
                log.error("webhook endpoint answered 410 Gone: disabled")
                await self._outbox.mark_gone(self.config.url)
                await self._dead(host, entry, "gone", attempts)
                return -1
            if response.status_code in (429, 503):
                wait_s = retry_after(response)
        age_s = (now_ms() - entry.created_ms) / 1000
        if attempts >= self.config.attempts or age_s >= self.config.max_age_s:
            await self._dead(host, entry, status, attempts)
            return None
        if wait_s is None:
            ceiling = min(self.config.backoff_s * 2 ** (attempts - 1), self.config.backoff_max_s)
            wait_s = random.uniform(ceiling / 2, ceiling)  # jitter, not secrecy
        at = now_ms() + int(wait_s * 1000)
        await self._outbox.retry_at(host, entry.id, attempts, at)
        return at

    async def _dead(self, host: str, entry: Entry, why: str, attempts: int = 0) -> None:
        record = {
            "id": message_id(host, entry),
            "event": payload(host, entry),
            "attempts": attempts or entry.attempts,
            "last": why,
            "at": now_ms(),
        }
        await self._outbox.dead(host, entry.id, record)
