"""Outgoing requests to URLs people give Foyer (webhook endpoints, meeting
providers, CalDAV servers): a classic server-side request forgery path. A
target that resolves to a private, loopback, link-local or otherwise reserved
address is refused unless its host name or address is allow-listed (host
names, addresses or CIDRs: ``FOYER_WEBHOOK_ALLOW``, ``FOYER_CALENDAR_ALLOW``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Protocol
from urllib.parse import urlsplit

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedTarget(ValueError):
    """A webhook URL this deployment will not call (scheme, or a private address)."""


class Allows(Protocol):
    def allowed(self, host: str, address: str | None = None) -> bool: ...


class AllowList:
    """Host names, addresses or CIDRs a private-address target may use."""

    def __init__(self, items: tuple[str, ...] = ()) -> None:
        self.items = items
        nets: list[_Network] = []
        for item in items:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue  # a host name
        self._networks = tuple(nets)

    def allowed(self, host: str, address: str | None = None) -> bool:
        if host.lower() in (a.lower() for a in self.items):
            return True
        if address is None:
            return False
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in self._networks)


async def check_target(url: str, config: Allows) -> None:
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
                f"{host} resolves to {address}, a private address; allow-list it "
                "(FOYER_WEBHOOK_ALLOW, or FOYER_CALENDAR_ALLOW for a calendar) to call it"
            )
