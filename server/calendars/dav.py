"""The CalDAV conversation of one sync round, on the ``caldav`` library's
client (its session, authentication and XML elements).

Blocking (``requests`` underneath): the sync worker runs each call in a
thread. Every request is counted, so a round can say what it cost.

- ``check``: the URL is a calendar these credentials may read (PROPFIND).
- ``changes``: what changed since a sync token (RFC 6578 ``sync-collection``),
  or, where the server has no such report, by comparing ETags (PROPFIND).
- ``fetch``: one event's bytes and ETag (GET).
- ``store``: one event written back only if unchanged (PUT ``If-Match``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

import requests
import requests.auth
from caldav.davclient import DAVClient
from caldav.lib import error as caldav_error
from lxml import etree

DAV_NS = "DAV:"
CALDAV_NS = "urn:ietf:params:xml:ns:caldav"
MAX_EVENT_BYTES = 1024 * 1024


class CalDavError(Exception):
    """A round could not talk to the calendar; ``reason`` is safe to show."""

    reason = "unreachable"


class Refused(CalDavError):
    """401/403: the credentials are wrong or were revoked."""

    reason = "refused"


class NotACalendar(CalDavError):
    reason = "not_a_calendar"


class Unreachable(CalDavError):
    reason = "unreachable"


class PreconditionFailed(CalDavError):
    """412: the event changed on the server since it was read."""

    reason = "changed"


@dataclass(slots=True)
class Changes:
    token: str  # the token to ask from next time ("" when the server has none)
    changed: dict[str, str] = field(default_factory=dict)  # href -> etag
    deleted: list[str] = field(default_factory=list)
    full: bool = False  # everything was listed (first round, or the token was refused)


def _tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _path(url: str) -> str:
    return unquote(urlsplit(url).path)


class CalDav:
    def __init__(self, url: str, username: str, password: str, timeout: float) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.requests = 0
        self._client = DAVClient(
            url=self.url,
            # Basic credentials from the first request (no 401 round trip; the
            # auth_type argument of caldav 2.0 builds no auth object).
            auth=requests.auth.HTTPBasicAuth(username, password),
            timeout=int(max(1, timeout)),
        )

    def close(self) -> None:
        self._client.session.close()

    def _request(
        self, method: str, url: str, body: bytes | str = "", headers: dict[str, str] | None = None
    ) -> Any:
        self.requests += 1
        try:
            text = body if isinstance(body, str) else body.decode("utf-8", "replace")
            response = self._client.request(url, method, text, headers or {})
        except caldav_error.AuthorizationError:
            raise Refused("the calendar server refused these credentials") from None
        except caldav_error.DAVError as exc:
            name = type(exc).__name__
            raise Unreachable(f"the calendar server failed ({name})") from None
        except requests.RequestException as exc:
            name = type(exc).__name__
            raise Unreachable(f"the calendar server does not answer ({name})") from None
        if response.status in (401, 403):
            raise Refused("the calendar server refused these credentials")
        if response.status >= 500:
            raise Unreachable(f"the calendar server failed ({response.status})")
        return response

    def _xml(self, response: Any) -> Any:
        raw = response._raw or b""
        try:
            return etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False))
        except etree.XMLSyntaxError:
            raise NotACalendar("the server's answer is not WebDAV XML") from None

    def check(self) -> None:
        """Raise unless the URL is a calendar collection these credentials read."""
        body = (
            '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
            "<d:prop><d:resourcetype/></d:prop></d:propfind>"
        )
        response = self._request("PROPFIND", self.url, body, {"Depth": "0"})
        if response.status != 207:
            raise NotACalendar(f"the URL is not a calendar ({response.status})")
        tree = self._xml(response)
        if tree.find(f".//{_tag(DAV_NS, 'resourcetype')}/{_tag(CALDAV_NS, 'calendar')}") is None:
            raise NotACalendar("the URL is a WebDAV folder but not a calendar")

    def changes(self, token: str, known: dict[str, str]) -> Changes:
        """What changed since ``token`` ("" = everything); ``known`` (href -> ETag)
        is what the ETag comparison uses where the server has no sync report."""
        body = (
            '<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:">'
            f"<d:sync-token>{escape(token)}</d:sync-token><d:sync-level>1</d:sync-level>"
            "<d:prop><d:getetag/></d:prop></d:sync-collection>"
        )
        response = self._request("REPORT", self.url, body, {"Depth": "1"})
        if response.status in (403, 409) and token:
            # RFC 6578 3.2: a token the server no longer knows: list everything.
            return self.changes("", known)
        if response.status != 207:
            return self._by_etags(known)
        tree = self._xml(response)
        found = Changes(token=(tree.findtext(_tag(DAV_NS, "sync-token")) or ""), full=not token)
        for item in tree.iter(_tag(DAV_NS, "response")):
            href = _path(urljoin(self.url, item.findtext(_tag(DAV_NS, "href")) or ""))
            if not href or href.rstrip("/") == _path(self.url).rstrip("/"):
                continue
            status = item.findtext(_tag(DAV_NS, "status")) or ""
            if " 404 " in status:
                found.deleted.append(href)
                continue
            etag = item.findtext(f".//{_tag(DAV_NS, 'getetag')}") or ""
            found.changed[href] = etag
        if found.full:  # what was known and is no longer listed is gone
            found.deleted += [h for h in known if h not in found.changed]
        return found

    def _by_etags(self, known: dict[str, str]) -> Changes:
        body = (
            '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
            "<d:prop><d:getetag/></d:prop></d:propfind>"
        )
        response = self._request("PROPFIND", self.url, body, {"Depth": "1"})
        if response.status != 207:
            raise NotACalendar(f"the calendar cannot be listed ({response.status})")
        listed: dict[str, str] = {}
        for item in self._xml(response).iter(_tag(DAV_NS, "response")):
            href = _path(urljoin(self.url, item.findtext(_tag(DAV_NS, "href")) or ""))
            if href and href.rstrip("/") != _path(self.url).rstrip("/"):
                listed[href] = item.findtext(f".//{_tag(DAV_NS, 'getetag')}") or ""
        changed = {h: e for h, e in listed.items() if known.get(h) != e}
        return Changes("", changed, [h for h in known if h not in listed], full=True)

    def fetch(self, href: str) -> tuple[bytes, str] | None:
        """The event's bytes and ETag (None: it is gone)."""
        response = self._request("GET", urljoin(self.url, href))
        if response.status == 404:
            return None
        if response.status != 200:
            raise Unreachable(f"the event could not be read ({response.status})")
        data = bytes(response._raw or b"")
        if len(data) > MAX_EVENT_BYTES:
            raise NotACalendar("an event is larger than 1 MiB")
        return data, str(response.headers.get("ETag") or "")

    def fetch_many(self, hrefs: list[str]) -> dict[str, tuple[bytes, str]]:
        """Several events in one ``calendar-multiget`` REPORT: href -> (bytes, ETag);
        an href missing from the answer is gone."""
        if not hrefs:
            return {}
        listed = "".join(f"<d:href>{escape(quote(h))}</d:href>" for h in hrefs)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<c:calendar-multiget xmlns:d="DAV:" xmlns:c="{CALDAV_NS}">'
            f"<d:prop><d:getetag/><c:calendar-data/></d:prop>{listed}</c:calendar-multiget>"
        )
        response = self._request("REPORT", self.url, body, {"Depth": "1"})
        if response.status != 207:
            return {h: f for h in hrefs if (f := self.fetch(h)) is not None}  # one by one
        out: dict[str, tuple[bytes, str]] = {}
        for item in self._xml(response).iter(_tag(DAV_NS, "response")):
            href = _path(urljoin(self.url, item.findtext(_tag(DAV_NS, "href")) or ""))
            data = item.findtext(f".//{_tag(CALDAV_NS, 'calendar-data')}")
            if data is None:
                continue
            raw = data.encode()
            if len(raw) > MAX_EVENT_BYTES:
                raise NotACalendar("an event is larger than 1 MiB")
            out[href] = (raw, item.findtext(f".//{_tag(DAV_NS, 'getetag')}") or "")
        return out

    def store(self, href: str, data: bytes, etag: str) -> str:
        """Write the event only if its ETag is still ``etag``; the new ETag
        ("" when the server does not say). ``PreconditionFailed``: it changed."""
        headers = {"Content-Type": "text/calendar; charset=utf-8", "If-Match": etag}
        response = self._request("PUT", urljoin(self.url, href), data, headers)
        if response.status == 412:
            raise PreconditionFailed("the event changed meanwhile")
        if response.status not in (200, 201, 204):
            raise Unreachable(f"the event could not be written ({response.status})")
        return str(response.headers.get("ETag") or "")
