"""Meeting providers: they hand out meeting URLs (Foyer does no media).

``MeetingProvider`` is the deployment's template (``FOYER_MEETING_URL`` with
``{meeting_id}``; the default is a Jitsi Meet room, so a link works out of
the box): the personal room, a fresh room per ``new_meeting``, and the
``template`` provider of a dedicated meeting. ``WebhookProvider`` asks the
integrator instead: a signed POST (Standard Webhooks, as
``server.notify.webhooks``), answered with the URL the integrator's platform
made (docs/meetings.md, Providers).

A guest who knocked through a dedicated meeting's join link carries that
meeting in its options (``meeting``, ``url``: set by the server, never taken
from a link): admitting it sends it to the dedicated URL, not the personal room.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from protocol.errors import ProviderFailed

# The options of a guest that shape its meeting; ``admit_all`` copies exactly
# these from each guest into the personal room's meeting (in the store's script):
# ``url`` is a dedicated meeting's, so its guests go there.
PER_GUEST_OPTIONS: tuple[str, ...] = ("title", "duration", "url")
MAX_URL = 2048


class MeetingProvider:
    def __init__(self, url_template: str) -> None:
        if "{meeting_id}" not in url_template:
            url_template = url_template.rstrip("/") + "/{meeting_id}"
        self.url_template = url_template

    def url(self, meeting_id: str) -> str:
        return self.url_template.replace("{meeting_id}", meeting_id)

    def meeting(self, meeting_id: str, options: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": meeting_id,
            "url": self.url(meeting_id),
            "title": options.get("title") or "Meeting",
            "duration": int(options.get("duration") or 30),
        }

    def personal(self, room: str, options: dict[str, Any]) -> dict[str, Any]:
        """The host's personal room (``admit``), or the dedicated meeting the
        guest knocked for (its options name it)."""
        if options.get("meeting") and options.get("url"):
            out = self.meeting(str(options["meeting"]), options)
            out["url"] = str(options["url"])
            return out
        return self.meeting(room, options)

    def new(self, options: dict[str, Any]) -> dict[str, Any]:
        """A fresh, unique meeting (``new_meeting``)."""
        return self.meeting("foyer-" + secrets.token_hex(8), options)

    def declared(self, declared: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        """The meeting the host said it is in (``merge``)."""
        out = self.meeting(str(declared["id"]), options)
        if declared.get("url"):
            out["url"] = declared["url"]
        if declared.get("title"):
            out["title"] = declared["title"]
        return out


# -- providers of dedicated meetings ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeetingOrder:
    """What a provider is asked to make: one dedicated meeting."""

    meeting_id: str
    host: str
    title: str
    starts_at: int | None  # ms since the Unix epoch
    ends_at: int | None
    workspace: str | None = None
    account: str | None = None  # the connected account, for a booking's meeting


class Provider(Protocol):
    async def create(self, order: MeetingOrder) -> str:
        """The meeting's URL, or ``ProviderFailed``."""
        ...


class TemplateProvider:
    """The deployment's URL template: nothing to call, it cannot fail."""

    def __init__(self, template: MeetingProvider) -> None:
        self.template = template

    async def create(self, order: MeetingOrder) -> str:
        return self.template.url(order.meeting_id)


CheckTarget = Callable[[str], Awaitable[None]]  # raises ValueError for a refused URL


class WebhookProvider:
    """POST ``{type: "meeting.create", timestamp, data}`` signed with the
    Standard Webhooks secret; the integrator answers 2xx ``{"url": ...}``.
    The ``webhook-id`` is the meeting id: a retry is recognisable."""

    def __init__(
        self, url: str, secret: str, check: CheckTarget, *, timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.check = check
        self.timeout_s = timeout_s
        self._signer = Webhook(secret)

    async def create(self, order: MeetingOrder) -> str:
        data = {
            "meeting_id": order.meeting_id,
            "host": order.host,
            "title": order.title,
            "starts_at": order.starts_at,
            "ends_at": order.ends_at,
            "workspace": order.workspace,
            "account": order.account,
        }
        sent = datetime.now(UTC)
        body = json.dumps(
            {"type": "meeting.create", "timestamp": sent.isoformat(), "data": data},
            separators=(",", ":"),
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": order.meeting_id,
            "webhook-timestamp": str(int(sent.timestamp())),
            "webhook-signature": self._signer.sign(order.meeting_id, sent, body),
        }
        try:
            await self.check(self.url)
        except ValueError as exc:
            raise ProviderFailed(f"the meeting provider's URL is refused: {exc}") from None
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
                response = await client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise ProviderFailed(
                f"the meeting provider did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderFailed(
                f"the meeting provider could not be reached ({type(exc).__name__})"
            ) from None
        if not response.is_success:
            raise ProviderFailed(f"the meeting provider answered HTTP {response.status_code}")
        return _answered_url(response)


def _answered_url(response: httpx.Response) -> str:
    try:
        url = response.json().get("url")
    except (ValueError, AttributeError):
        url = None
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise ProviderFailed('the meeting provider must answer JSON {"url": "https://..."}')
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderFailed("the meeting provider answered a URL that is not http(s)")
    return url
