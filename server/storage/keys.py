"""Redis key names. Every key of one host shares the hash tag ``{h:<host>}``,
so a host's state, its scripts and its channel sit on one Cluster slot."""

from __future__ import annotations

EXPIRY = "foyer:expiry"  # zset "host\\nguest" -> deadline ms
MAX_WAIT = "foyer:max-wait"  # zset "host\\nguest" -> when its maximum wait ends (ms)
LEASES = "foyer:guest-leases"  # zset "host\\nguest\\nconn" -> lease deadline ms
MAIL_DUE = "foyer:mail-due"  # zset host -> when to send its email
OUTBOX_HOSTS = "foyer:outbox-hosts"  # zset host -> when its webhook outbox is due
WEBHOOK_GONE = "foyer:webhook-gone"  # the deployment URL that answered 410
WEBHOOKS = "foyer:webhooks"  # hash endpoint id -> the registered endpoint (msgpack)
OUTBOX_MAX = 10_000  # entries kept per host outbox (MAXLEN ~): a dead receiver's backlog
DEAD_MAX = 1_000  # dead-lettered deliveries kept per endpoint
ATTEMPTS_MAX = 500  # delivery attempts kept per endpoint (its log)


def tag(host: str) -> str:
    return f"foyer:{{h:{host}}}"


def channel(host: str) -> str:
    return f"{tag(host)}:events"


def knock_channel(host: str) -> str:
    """The channel of the host's knocks: only processes with a device of the
    host follow it, so a process of guests is never sent them (issue 11).
    (``:knocks``, without "-events", is the raid count's zset.)"""
    return f"{tag(host)}:knock-events"


# A device's member in the host's devices zset starts with this when its process
# follows ``knock_channel``; a member without it is a device of a Foyer from before
# that channel, which hears knocks only on ``channel`` (knock.lua publishes
# there while one is online: a rolling upgrade loses no knock).
KNOCK_LISTENER = "k:"


def host(host: str) -> str:
    return f"{tag(host)}:host"


def guest_prefix(host: str) -> str:
    return f"{tag(host)}:g:"


def guest(host: str, guest: str) -> str:
    return guest_prefix(host) + guest


def slug(slug: str) -> str:
    return f"foyer:slug:{slug.lower()}"


def outbox(host: str) -> str:
    """The host's webhook outbox: a stream the lifecycle scripts append to."""
    return f"{tag(host)}:outbox"


def outbox_tries(host: str) -> str:
    """Hash outbox entry id -> "attempts:next attempt ms"."""
    return f"{tag(host)}:outbox-tries"


def dead_letters(endpoint: str) -> str:
    """List of an endpoint's deliveries that ran out of retries (newest first)."""
    return f"foyer:webhook:{{{endpoint}}}:dead"


def webhook_attempts(endpoint: str) -> str:
    """List of an endpoint's latest delivery attempts (newest first)."""
    return f"foyer:webhook:{{{endpoint}}}:attempts"
