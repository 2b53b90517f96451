"""Foyer's asyncio client for hosts and guests (used by tests and examples).

async with HostClient(url, token) as host:          # msgpack by default
    knock = await host.wait_for(JoinRequest)        # -> JoinRequest
    await host.admit(knock.guest["id"])             # AlreadyResolved if another reply won

async with GuestClient(url, "ada-lovelace", name="Ann") as guest:
    outcome = await guest.wait_for(Admitted, BusyNotice, Denied)

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
    GuestLeft,
    HostMessage,
    JoinRequest,
    Pong,
    Position,
    PresenceChanged,
    Resolved,
    SettingsChanged,
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
    "GuestLeft",
    "HostClient",
    "HostMessage",
    "InternalError",
    "JoinRequest",
    "Locked",
    "NotInMeeting",
    "Pong",
    "Position",
    "PresenceChanged",
    "ProtocolError",
    "RateLimited",
    "Resolved",
    "SettingsChanged",
    "Unauthorized",
    "UnknownGuest",
    "UnknownLink",
    "Waiting",
    "Welcome",
]
