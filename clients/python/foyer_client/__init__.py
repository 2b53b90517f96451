"""Foyer's asyncio client for hosts and guests (used by tests and examples).

async with HostClient(url, token) as host:          # msgpack by default
    knock = await host.wait_for(JoinRequest)        # -> JoinRequest
    await host.admit(knock.guest["id"])             # AlreadyResolved if another reply won

async with GuestClient(url, "ada-lovelace", name="Ann") as guest:
    outcome = await guest.wait_for(Admitted, BusyNotice, Denied)   # or Held, TimedOut

Errors come from ``protocol.errors`` (re-exported here): an ``error`` reply
raises its ``ProtocolError`` (``AlreadyResolved``, ``UnknownLink``, ...; with
``close_code`` when the server closed after it), a closed connection raises
``ConnectionClosed``.
"""

from foyer_client.client import GuestClient, HostClient
from protocol.errors import (
    AlreadyResolved,
    BadFrame,
    BadMessage,
    ConnectionClosed,
    FoyerError,
    FrameTooLarge,
    InternalError,
    Locked,
    NotInMeeting,
    ProtocolError,
    RateLimited,
    Unauthorized,
    UnknownGuest,
    UnknownLink,
)
from protocol.messages import (
    Ack,
    Admitted,
    BusyNotice,
    Denied,
    Error,
    GuestAway,
    GuestBack,
    GuestHeld,
    GuestLeft,
    Held,
    HostMessage,
    HostStatus,
    JoinRequest,
    Pong,
    Position,
    PresenceChanged,
    RaidNotice,
    Resolved,
    SettingsChanged,
    TimedOut,
    Waiting,
    Welcome,
)

__all__ = [
    "Ack",
    "Admitted",
    "AlreadyResolved",
    "BadFrame",
    "BadMessage",
    "BusyNotice",
    "ConnectionClosed",
    "Denied",
    "Error",
    "FoyerError",
    "FrameTooLarge",
    "GuestAway",
    "GuestBack",
    "GuestClient",
    "GuestHeld",
    "GuestLeft",
    "Held",
    "HostClient",
    "HostMessage",
    "HostStatus",
    "InternalError",
    "JoinRequest",
    "Locked",
    "NotInMeeting",
    "Pong",
    "Position",
    "PresenceChanged",
    "ProtocolError",
    "RaidNotice",
    "RateLimited",
    "Resolved",
    "SettingsChanged",
    "TimedOut",
    "Unauthorized",
    "UnknownGuest",
    "UnknownLink",
    "Waiting",
    "Welcome",
]
