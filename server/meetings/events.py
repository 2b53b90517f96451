"""The one place where meeting and booking events would leave Foyer.

``PlannedMeetings`` and ``Bookings`` call ``MeetingEvents.emit`` after each
change has been stored: ``meeting.created``, ``meeting.updated``,
``meeting.cancelled``, ``booking.created``, ``booking.updated`` and
``booking.cancelled``, with the JSON view of the thing (docs/meetings.md,
Events). This base class drops them; ``server/node.py`` builds
``WebhookMeetingEvents`` (``server.notify.webhooks``), which puts each in the
host's webhook outbox.
"""

from __future__ import annotations

from typing import Any

EVENT_TYPES = (
    "meeting.created",
    "meeting.updated",
    "meeting.cancelled",
    "booking.created",
    "booking.updated",
    "booking.cancelled",
)


class MeetingEvents:
    """Receives every meeting and booking change, once, after it is stored."""

    async def emit(self, kind: str, data: dict[str, Any]) -> None:
        """``kind`` is one of ``EVENT_TYPES``; ``data`` is JSON-ready.
        A subclass delivers it; this one drops it."""
        assert kind in EVENT_TYPES, kind
