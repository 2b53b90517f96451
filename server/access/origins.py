"""Who may open a WebSocket, and from which address a request comes.

Origins: a browser from another origin is refused unless listed in
``FOYER_ALLOWED_ORIGINS``; the same origin always passes; clients without an
Origin header (native apps, servers) pass. Client address: the socket's peer,
or, only when the peer is a trusted proxy, the rightmost ``X-Forwarded-For``
hop that is not one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """The socket's peer; behind a trusted proxy, the rightmost hop of
    ``X-Forwarded-For`` that is not itself a trusted proxy.

    Proxies append, so everything left of the last untrusted hop was written
    by the client and proves nothing (it would let a client pick a new address
    per knock and escape the per-address limit). This is uvicorn's
    ``ProxyHeadersMiddleware.get_trusted_client_address``: several headers
    join in order, empty entries are skipped, an all-trusted chain (always the
    case with ``*``) gives its leftmost hop.
    """
    return address_of(scope.get("client"), scope.get("headers", []), trusted)


def address_of(
    client: Sequence[Any] | None, headers: Sequence[tuple[bytes, bytes]], trusted: list[str]
) -> str:
    """``client_address`` from the peer and the raw (lower-cased) headers."""
    peer = str(client[0]) if client else "unknown"
    every = "*" in trusted
    if not every and peer not in trusted:
        return peer
    joined = ",".join(
        value.decode("latin-1") for name, value in headers if name == b"x-forwarded-for"
    )
    hops = [hop.strip() for hop in joined.split(",") if hop.strip()]
    if not hops:
        return peer
    if not every:
        for hop in reversed(hops):
            if hop not in trusted:
                return hop
    return hops[0]
