"""The meeting provider: hands out meeting ids and URLs (Foyer does no media).

URLs come from the ``FOYER_MEETING_URL`` template with ``{meeting_id}``; the
default is a Jitsi Meet room, so a link works out of the box.
"""

from __future__ import annotations

import secrets
from typing import Any

# The options of a guest that shape its meeting; ``admit_all`` copies exactly
# these from each guest into the personal room's meeting (in the store's script).
PER_GUEST_OPTIONS: tuple[str, ...] = ("title", "duration")


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
        """The host's personal room (``admit``)."""
        return self.meeting(room, options)

    def new(self, options: dict[str, Any]) -> dict[str, Any]:
        """A fresh, unique meeting (``new_meeting``)."""
        return self.meeting("foyer-" + secrets.token_hex(8), options)

    def instant(
        self, room: str, settings: dict[str, Any], options: dict[str, Any]
    ) -> dict[str, Any]:
        """A meeting made on the spot (``new_meeting``, Meet now): a fresh one,
        or the personal room when the host's ``instant_personal_room`` says so."""
        if settings.get("instant_personal_room"):
            return self.personal(room, options)
        return self.new(options)

    def declared(self, declared: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        """The meeting the host said it is in (``merge``)."""
        out = self.meeting(str(declared["id"]), options)
        if declared.get("url"):
            out["url"] = declared["url"]
        if declared.get("title"):
            out["title"] = declared["title"]
        return out
