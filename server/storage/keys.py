"""Redis key names. Every key of one host shares the hash tag ``{h:<host>}``,
so a host's state, its scripts and its channel sit on one Cluster slot."""

from __future__ import annotations

EXPIRY = "foyer:expiry"  # zset "host\\nguest" -> deadline ms
LEASES = "foyer:guest-leases"  # zset "host\\nguest\\nconn" -> lease deadline ms
MAIL_DUE = "foyer:mail-due"  # zset host -> when to send its email


def tag(host: str) -> str:
    return f"foyer:{{h:{host}}}"


def channel(host: str) -> str:
    return f"{tag(host)}:events"


def host(host: str) -> str:
    return f"{tag(host)}:host"


def guest_prefix(host: str) -> str:
    return f"{tag(host)}:g:"


def guest(host: str, guest: str) -> str:
    return guest_prefix(host) + guest


def slug(slug: str) -> str:
    return f"foyer:slug:{slug.lower()}"
