"""Who may open a WebSocket, and from which address a request comes.

Origins: a browser from another origin is refused unless listed in
``FOYER_ALLOWED_ORIGINS``; the same origin always passes; clients without an
Origin header (native apps, servers) pass. Client address: the socket's peer,
or ``X-Forwarded-For`` only when the peer is a trusted proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def origin_allowed(headers: Mapping[str, str], allowed: list[str]) -> bool:
    origin = headers.get("origin")
    if not origin:
        return True
    origin = origin.rstrip("/").lower()
    if "*" in allowed or origin in (a.lower() for a in allowed):
        return True
    host = (headers.get("host") or "").lower()
    return bool(host) and urlsplit(origin).netloc == host


def client_address(scope: Mapping[str, Any], trusted: list[str]) -> str:
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if peer in trusted or "*" in trusted:
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                first = value.decode("latin-1").split(",")[0].strip()
                if first:
                    return str(first)
    return peer
