"""Webhooks, the Standard Webhooks way: each lifecycle event the scripts put
in a host's outbox (``server.storage.outbox``) is POSTed, signed, to every
endpoint that wants it, at least once: the deployment's (``FOYER_WEBHOOK_URL``)
and those registered through the API (``server.storage.webhooks``), each with
its own secrets and its filters by event type and host.

Nothing here is on the knock path: the knock's script appends to the outbox
in the same atomic step as its publish, and this worker, in every process,
delivers later. The ``webhook-id`` is derived from the host and the outbox
entry's id, so it is stable across retries and processes and a receiver
de-duplicates on it. 2xx is delivered; 429/503 retry after ``Retry-After``;
410 disables the endpoint; anything else (or no answer within the timeout)
retries with exponential backoff and jitter, until
``FOYER_WEBHOOK_ATTEMPTS`` attempts or ``FOYER_WEBHOOK_MAX_AGE`` seconds, then
the delivery goes to the endpoint's dead-letter list, from where the API can
deliver it again. Each endpoint's retries are its own: one failing receiver
delays no other.

Server-side request forgery: a target that resolves to a private, loopback,
link-local or otherwise reserved address is refused unless its host name or
address is allow-listed (``FOYER_WEBHOOK_ALLOW``, host names or CIDRs).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from protocol.events import Hook
from server.access.targets import AllowList, RefusedTarget, check_target
from server.meetings.events import MeetingEvents
from server.storage.keys import ATTEMPTS_MAX
from server.storage.outbox import READ_LIMIT, Entry, Outbox
from server.storage.values import now_ms, unpack
from server.storage.webhooks import DEPLOYMENT, Endpoint, Secret, WebhookStore, new_attempt

log = logging.getLogger("foyer.webhooks")

MAX_RETRY_AFTER_S = 24 * 3600
_PACKED = frozenset({"card", "outcome", "meeting", "held"})  # fields the scripts store as msgpack


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str | None = None
    secret: str | None = None  # whsec_<base64>; several (space or comma separated) all sign
    allow: tuple[str, ...] = ()  # host names, addresses or CIDRs private targets may use
    attempts: int = 15
    max_age_s: float = 24 * 3600.0
    backoff_s: float = 5.0  # the first retry's delay; doubles per attempt
    backoff_max_s: float = 3600.0
    timeout_s: float = 10.0
    claim_s: float = 60.0  # a crashed process's claim on a host runs out after this
    _allow: AllowList = field(default_factory=AllowList, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allow", AllowList(self.allow))

    @property
    def secrets(self) -> tuple[str, ...]:
        """The deployment secrets: the first is current; the others are being
        rotated out, and every one of them signs each delivery meanwhile."""
        return tuple(x for x in (self.secret or "").replace(",", " ").split() if x)

    def allowed(self, host: str, address: str | None = None) -> bool:
        return self._allow.allowed(host, address)


def payload(host: str, entry: Entry) -> dict[str, Any]:
    """The Standard Webhooks body: ``{type, timestamp, data}``."""
    created = datetime.fromtimestamp(entry.created_ms / 1000, UTC)
    if "json" in entry.fields:  # a meeting or booking event: its view, as written
        kind = entry.fields["type"].decode()
        data_json: dict[str, Any] = {"host": host, **json.loads(entry.fields["json"])}
        return {"type": kind, "timestamp": created.isoformat(), "data": data_json}
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
    if kind in (Hook.RESOLVED, Hook.HELD):
        # Who answered: "device" (with its id), "api" or "email" (absent: unknown).
        by, _, device = str(data.pop("by", "")).partition(":")
        if by:
            data["by"] = by
        if device:
            data["device"] = device
    return {"type": kind.value, "timestamp": created.isoformat(), "data": data}


def check_secret(secret: str) -> None:
    """Raise ``ValueError`` unless ``secret`` is a usable ``whsec_`` secret."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret must be in whsec_<base64> form")
    try:
        Webhook(secret)
    except Exception as exc:  # the library's base64 error
        raise ValueError("a webhook secret must be in whsec_<base64> form") from exc


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
    """The delivery worker of one process (the Node runs ``deliver_due``).

    ``switch`` turns the scripts' outbox writes on or off (the Store's
    ``outbox`` flag): on while any endpoint exists. A process learns of an
    endpoint another process registered at its next pass (``FOYER_WEBHOOK_POLL``).
    """

    def __init__(
        self,
        outbox: Outbox,
        registry: WebhookStore,
        config: WebhookConfig,
        switch: Callable[[bool], None] = lambda on: None,
    ) -> None:
        self._outbox = outbox
        self.registry = registry
        self.config = config
        self._switch = switch
        self._signers: dict[str, Webhook] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._client: httpx.AsyncClient | None = None

    @property
    def enabled(self) -> bool:
        """Whether any endpoint is known (the scripts write the outbox)."""
        return bool(self._endpoints)

    def deployment(self, gone: bool = False) -> Endpoint | None:
        if not self.config.url:
            return None
        secrets = tuple(Secret(s) for s in self.config.secrets)
        return Endpoint(DEPLOYMENT, self.config.url, secrets, disabled="gone" if gone else "")

    async def start(self) -> None:
        """Check the deployment endpoint (a refused one stops start-up), open the
        client, and learn the registered endpoints."""
        if self.config.url:
            if not self.config.secrets:
                raise ValueError("FOYER_WEBHOOK_SECRET must be set, in whsec_<base64> form")
            for secret in self.config.secrets:
                try:
                    check_secret(secret)
                except ValueError:
                    raise ValueError(
                        "FOYER_WEBHOOK_SECRET must be whsec_<base64> (several: space-separated)"
                    ) from None
            await check_target(self.config.url, self.config)
        self._client = httpx.AsyncClient(
            timeout=self.config.timeout_s, follow_redirects=False, trust_env=False
        )
        await self.refresh()

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def refresh(self) -> None:
        """Read the endpoints again (the registry, and whether the deployment's
        answered 410) and switch the outbox writes accordingly."""
        found = {e.id: e for e in await self.registry.endpoints()}
        if self.config.url:
            gone = await self.registry.gone() == self.config.url
            deployment = self.deployment(gone)
            assert deployment is not None
            found[DEPLOYMENT] = deployment
        self.learn(found)

    def learn(self, endpoints: dict[str, Endpoint]) -> None:
        self._endpoints = endpoints
        self._switch(bool(endpoints))

    def known(self, endpoint: Endpoint | None, endpoint_id: str = "") -> None:
        """Take a change this process made to one endpoint (None: deleted) at
        once, without waiting for the next pass."""
        found = dict(self._endpoints)
        if endpoint is None:
            found.pop(endpoint_id, None)
        else:
            found[endpoint.id] = endpoint
        self.learn(found)

    async def deliver_due(self) -> int:
        """Deliver what is due in every host outbox this process can claim; returns
        how many deliveries succeeded. A host whose pass fails keeps its claim,
        which runs out: another pass (here or in another process) takes it."""
        if self._client is None:
            return 0
        await self.refresh()
        if not self._endpoints:
            return 0  # nothing to deliver to (entries written before wait for one)
        claimed = await self._outbox.claim(int(self.config.claim_s * 1000))
        if not claimed:
            return 0
        results = await asyncio.gather(
            *(self._host(host, claim) for host, claim in claimed), return_exceptions=True
        )
        delivered = 0
        for (host, _), result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("webhooks of host %s failed: %s", host, type(result).__name__)
            else:
                delivered += result
        return delivered

    async def _host(self, host: str, claim: str) -> int:
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
            owed, sent = await self._entry(host, entry, now)
            delivered += sent
            if owed is not None:
                next_ms = owed if next_ms is None else min(next_ms, owed)
        if len(entries) >= READ_LIMIT:
            next_ms = now_ms()  # more behind these
        await self._outbox.release(host, claim, next_ms)
        return delivered

    async def _entry(self, host: str, entry: Entry, now: int) -> tuple[int | None, int]:
        """Try the entry on every endpoint it is owed to and due for; returns the
        time of its next attempt (None: done with) and how many were delivered."""
        redelivery = entry.redelivery
        if redelivery is not None:
            target, msg_id, body = redelivery
            event: dict[str, Any] = json.loads(body)
            pending = entry.pending if entry.pending is not None else {target: (0, 0)}
        else:
            event = payload(host, entry)
            msg_id = message_id(host, entry)
            body = json.dumps(event, separators=(",", ":")).encode()
            if entry.pending is not None:
                pending = entry.pending
            else:
                wanted = (
                    e
                    for e in self._endpoints.values()
                    if e.wants(host, event["type"]) and entry.created_ms >= e.created_ms
                )  # an endpoint gets the events made after it was registered
                pending = {e.id: (0, 0) for e in wanted}
        due = {k: v for k, v in pending.items() if v[1] <= now}
        results = await asyncio.gather(
            *(self._try(k, host, msg_id, event, body, entry, v[0]) for k, v in due.items())
        )
        left = {k: v for k, v in pending.items() if k not in due}
        for endpoint_id, at in zip(due, results, strict=True):
            if at is not None:
                left[endpoint_id] = (due[endpoint_id][0] + 1, at)
        sent = sum(1 for at in results if at is None)
        if not left:
            await self._outbox.done(host, entry.id)
            return None, sent
        if left != entry.pending:
            await self._outbox.owed(host, entry.id, left)
        return min(at for _, at in left.values()), sent

    async def _try(
        self,
        endpoint_id: str,
        host: str,
        msg_id: str,
        event: dict[str, Any],
        body: bytes,
        entry: Entry,
        tried: int,
    ) -> int | None:
        """POST one event to one endpoint: None when it is done with (delivered,
        dead-lettered, or the endpoint is gone), else the ms time of its next try."""
        assert self._client is not None
        attempts = tried + 1
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            return None  # deleted since: nobody to deliver to
        if endpoint.disabled:
            await self._dead(endpoint, host, msg_id, event, endpoint.disabled, tried)
            return None
        sent = datetime.now(UTC)
        signatures = [
            self._signer(s).sign(msg_id, sent, body.decode()) for s in endpoint.signing(now_ms())
        ]
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(sent.timestamp())),
            "webhook-signature": " ".join(signatures),
        }
        wait_s: float | None = None
        try:
            await check_target(endpoint.url, self.config)  # DNS may have changed
            response = await self._client.post(endpoint.url, content=body, headers=headers)
        except RefusedTarget as exc:
            log.error("webhook target refused: %s", exc)
            await self._dead(endpoint, host, msg_id, event, "refused", attempts)
            return None
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        else:
            status = str(response.status_code)
            if response.is_success:
                await self._log(endpoint, host, msg_id, event, attempts, "delivered", status)
                return None
            if response.status_code == 410:
                log.error("webhook endpoint %s answered 410 Gone: disabled", endpoint.id)
                await self._disable(endpoint)
                await self._dead(endpoint, host, msg_id, event, "gone", attempts)
                return None
            if response.status_code in (429, 503):
                wait_s = retry_after(response)
        age_s = (now_ms() - entry.created_ms) / 1000
        if attempts >= self.config.attempts or age_s >= self.config.max_age_s:
            await self._dead(endpoint, host, msg_id, event, status, attempts)
            return None
        if wait_s is None:
            ceiling = min(self.config.backoff_s * 2 ** (attempts - 1), self.config.backoff_max_s)
            wait_s = random.uniform(ceiling / 2, ceiling)  # jitter, not secrecy
        await self._log(endpoint, host, msg_id, event, attempts, "retrying", status)
        return now_ms() + int(wait_s * 1000)

    def _signer(self, secret: str) -> Webhook:
        signer = self._signers.get(secret)
        if signer is None:
            signer = self._signers[secret] = Webhook(secret)
        return signer

    async def _disable(self, endpoint: Endpoint) -> None:
        if endpoint.id == DEPLOYMENT:
            await self.registry.mark_gone(endpoint.url)
            self.known(self.deployment(gone=True))
            return
        current = await self.registry.get(endpoint.id)
        if current is not None:
            disabled = Endpoint.from_record({**current.to_record(), "disabled": "gone"})
            await self.registry.put(disabled)
            self.known(disabled)

    async def _log(
        self,
        endpoint: Endpoint,
        host: str,
        msg_id: str,
        event: dict[str, Any],
        attempt: int,
        result: str,
        status: str,
    ) -> None:
        record = new_attempt(msg_id, host, event, attempt, result, status)
        await self.registry.record(endpoint.id, record)

    async def _dead(
        self,
        endpoint: Endpoint,
        host: str,
        msg_id: str,
        event: dict[str, Any],
        why: str,
        attempts: int,
    ) -> None:
        record = {
            "id": msg_id,
            "host": host,
            "event": event,
            "attempts": attempts,
            "last": why,
            "at": now_ms(),
        }
        await self.registry.dead(endpoint.id, record)
        await self._log(endpoint, host, msg_id, event, attempts, "dead", why)

    # -- the endpoints API (server/web/webhooks_api.py) -----------------------------------

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        if endpoint_id == DEPLOYMENT:
            gone = bool(self.config.url) and await self.registry.gone() == self.config.url
            return self.deployment(gone)
        return await self.registry.get(endpoint_id)

    async def endpoints(self) -> list[Endpoint]:
        found = await self.registry.endpoints()
        deployment = await self.endpoint(DEPLOYMENT)
        return [deployment, *found] if deployment else found

    async def register(
        self,
        url: str,
        *,
        events: tuple[str, ...] = (),
        hosts: tuple[str, ...] = (),
        description: str = "",
        secret: str | None = None,
    ) -> Endpoint:
        """A new endpoint (``RefusedTarget``: its URL may not be called)."""
        await check_target(url, self.config)
        endpoint = Endpoint(
            id="ep_" + secrets.token_hex(8),
            url=url,
            secrets=(Secret(secret or new_secret()),),
            events=events,
            hosts=hosts,
            description=description,
            created_ms=now_ms(),
        )
        await self.registry.put(endpoint)
        self.known(endpoint)
        return endpoint

    async def remove(self, endpoint_id: str) -> bool:
        removed = await self.registry.delete(endpoint_id)
        self.known(None, endpoint_id)
        return removed

    async def rotate(self, endpoint_id: str, secret: str | None, overlap_s: float) -> Endpoint:
        """A new current secret; the old one keeps signing for ``overlap_s``."""
        current = await self.registry.get(endpoint_id)
        if current is None:
            raise KeyError(endpoint_id)
        rotated = current.rotated(secret or new_secret(), int(overlap_s * 1000), now_ms())
        await self.registry.put(rotated)
        self.known(rotated)
        return rotated

    async def enable(self, endpoint_id: str) -> Endpoint:
        """On again after a 410 (its receiver is back)."""
        if endpoint_id == DEPLOYMENT and self.config.url:
            await self.registry.clear_gone()
            enabled = self.deployment()
        else:
            current = await self.registry.get(endpoint_id)
            if current is None:
                raise KeyError(endpoint_id)
            enabled = Endpoint.from_record({**current.to_record(), "disabled": ""})
            await self.registry.put(enabled)
        assert enabled is not None
        self.known(enabled)
        return enabled

    async def redeliver(self, endpoint_id: str, message_id: str) -> bool:
        """Queue one logged or dead-lettered event again for one endpoint, with
        its webhook-id (False: no such delivery in its log or dead letters)."""
        record = await self.registry.take_dead(endpoint_id, message_id)
        if record is None:
            logged = await self.registry.attempts(endpoint_id, ATTEMPTS_MAX)
            record = next((a for a in logged if a.get("id") == message_id), None)
        if record is None or not record.get("event"):
            return False
        body = json.dumps(record["event"], separators=(",", ":")).encode()
        await self._outbox.redeliver(str(record["host"]), endpoint_id, message_id, body)
        return True


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 24 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class OutboxEvents:
    """Events made outside the lifecycle scripts (meetings, bookings, calendar
    sync) into the host's outbox, for the webhooks (while any endpoint exists).
    Written right after the change is stored, not in the same step: a process
    that dies between the two loses the event."""

    def __init__(self, outbox: Outbox, webhooks: Webhooks, public_url: str | None) -> None:
        self._outbox = outbox
        self._webhooks = webhooks
        self._base = (public_url or "").rstrip("/")

    async def emit(self, kind: str, data: dict[str, Any]) -> None:
        """``data`` is JSON-ready and names its ``host``."""
        if not self._webhooks.enabled:
            return
        link = data.get("join_link")
        if isinstance(link, str) and link.startswith("/") and self._base:
            data = {**data, "join_link": self._base + link}
        host = str(data["host"])
        await self._outbox.append(host, kind, json.dumps(data, separators=(",", ":")).encode())


class WebhookMeetingEvents(MeetingEvents):
    """Meeting and booking changes, as webhooks."""

    def __init__(self, events: OutboxEvents) -> None:
        self._events = events

    async def emit(self, kind: str, data: dict[str, Any]) -> None:
        await super().emit(kind, data)
        await self._events.emit(kind, data)
