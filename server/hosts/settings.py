"""Host settings: validated partial updates, from the HTTP API or a device.

Bodies are validated by pydantic models (these also feed the OpenAPI
document); the merge is applied by compare-and-set (``cas.lua``, retried) so
two concurrent updates never lose each other's fields; every device hears the
result from the same script.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import BadMessage
from server.hosts.directory import Directory
from server.storage.hosts import HostStore

# Names and addresses end up in email headers: no control characters (CR/LF).
PLAIN = r"^[^\x00-\x1f\x7f-\x9f]*$"
EMAIL = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$"
DisplayName = Annotated[str, Field(min_length=1, max_length=100, pattern=PLAIN)]
EmailAddress = Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL)]


class MeetingDefaultsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration: int | None = Field(default=None, ge=1, le=1440, description="minutes")
    region: str | None = Field(default=None, max_length=40)
    announce: bool | None = None
    autodelete: bool | None = None
    recording: Literal["automatic", "manual", "disabled"] | None = None


LISTS = ("allow", "block", "block_unverified")  # replaced whole by a patch


class PolicyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bypass: Literal["nobody", "verified", "everyone"] | None = None
    locked: bool | None = None
    allow: list[str] | None = Field(
        default=None, max_length=500, description="emails or domains that skip the lobby"
    )
    block: list[str] | None = Field(
        default=None, max_length=500, description="emails or domains refused quietly"
    )
    block_unverified: list[str] | None = Field(
        default=None,
        max_length=500,
        description="emails refused quietly when typed by a guest who is not signed in "
        "(a verified guest with that address still knocks)",
    )


class LobbyPatch(BaseModel):
    """Addition: queue control (issue 14). Missing keys take ``LOBBY_DEFAULTS``."""

    model_config = ConfigDict(extra="forbid")
    max_wait_s: int | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description="seconds an unanswered guest waits before a polite timed_out (0 = off)",
    )
    max_wait_message: str | None = Field(
        default=None, max_length=500, description="the line a guest gets when max_wait_s passes"
    )
    raid_threshold: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="knocks in a minute above which devices get one raid notice (0 = off)",
    )
    raid_autolock: bool | None = Field(default=None, description="lock the link when a raid starts")
    deny_cooldown_s: int | None = Field(
        default=None,
        ge=0,
        le=30 * 86_400,
        description="seconds a denied guest (its verified email, else its address) "
        "cannot knock again (0 = off)",
    )


LOBBY_DEFAULTS: dict[str, Any] = {
    "max_wait_s": 0,
    "max_wait_message": "",
    "raid_threshold": 20,
    "raid_autolock": False,
    # Off unless the host sets it: an address stands for a whole office behind one
    # NAT, and a deny is often only "not today".
    "deny_cooldown_s": 0,
}


def lobby_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The host's lobby rules: its ``lobby`` settings over ``LOBBY_DEFAULTS``."""
    given = settings.get("lobby")
    return {**LOBBY_DEFAULTS, **(given if isinstance(given, dict) else {})}


EMAIL_MODES = ("away", "always", "never")


def email_mode(settings: dict[str, Any]) -> str:
    """``away``, ``always`` or ``never`` (``email_notifications: false`` is ``never``)."""
    mode = settings.get("email_mode")
    if mode in EMAIL_MODES:
        return str(mode)
    return "never" if settings.get("email_notifications") is False else "away"


def settings_view(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as clients read them (API, ``welcome``, ``settings`` frames):
    what is stored over the defaults, so a new host shows its ``email_mode`` and
    ``lobby`` rules too, and the two email spellings always agree."""
    view = copy.deepcopy(settings)
    mode = email_mode(settings)
    view["email_mode"] = mode
    view["email_notifications"] = mode != "never"
    view["lobby"] = lobby_settings(settings)
    view.setdefault("instant_personal_room", False)
    view.setdefault("language", "en")
    return view


class SettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: DisplayName | None = None
    email: EmailAddress | None = None
    email_notifications: bool | None = None
    email_mode: Literal["away", "always", "never"] | None = Field(
        default=None,
        description="when the host gets an email about waiting guests: away (no device "
        "online; the default), always, never",
    )
    language: Literal["en", "fr", "de", "es"] | None = Field(
        default=None,
        description="the language of the host's emails (and of the pages their links "
        "open): en (the default), fr, de, es",
    )
    busy_message: str | None = Field(
        default=None, max_length=500, description="the line an email's Busy link sends"
    )
    instant_personal_room: bool | None = Field(
        default=None,
        description="new_meeting and Meet now use the host's personal room instead of a "
        "fresh meeting",
    )
    meeting_defaults: MeetingDefaultsPatch | None = None
    policy: PolicyPatch | None = None
    lobby: LobbyPatch | None = None


def _clean_list(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        item = value.strip().lower()
        if not item or len(item) > 254 or " " in item:
            raise BadMessage(f"'{value[:40]}' is not an email or a domain")
        if item not in out:
            out.append(item)
    return out


def validation_message(exc: ValidationError) -> str:
    """A short, safe description of the first problem in a body."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return f"{where}: {err.get('msg', 'invalid')}"


class HostSettings:
    def __init__(self, hosts: HostStore, directory: Directory, regions: list[str]) -> None:
        self._hosts = hosts
        self._directory = directory
        self._regions = regions

    def parse(self, patch: Any) -> SettingsPatch:
        try:
            return SettingsPatch.model_validate(patch)
        except ValidationError as exc:
            raise BadMessage(validation_message(exc)) from None

    async def update(self, host: str, patch: Any) -> dict[str, Any]:
        """Apply a partial update; returns the whole new settings."""
        body = self.parse(patch)
        defaults = body.meeting_defaults
        if defaults and defaults.region and defaults.region.lower() not in self._regions:
            raise BadMessage("meeting_defaults.region: not one of the configured regions")
        policy = body.policy
        lists = {
            name: _clean_list(value)
            for name in LISTS
            if policy is not None and (value := getattr(policy, name)) is not None
        }

        wants = body.email_notifications
        if wants is not None and body.email_mode is not None:
            if wants != (body.email_mode != "never"):
                raise BadMessage("email_notifications and email_mode disagree: send one")

        def merge(current: dict[str, Any]) -> dict[str, Any]:
            new = copy.deepcopy(current)
            # Either spelling sets both: email_notifications true keeps a mode
            # that sends (away or always) and turns never back into away.
            mode: str | None = body.email_mode
            if mode is None and wants is not None:
                now = email_mode(current)
                mode = "never" if not wants else ("away" if now == "never" else now)
            if mode is not None:
                new["email_mode"] = mode
                new["email_notifications"] = mode != "never"
            if body.language is not None:
                new["language"] = body.language
            if body.instant_personal_room is not None:
                new["instant_personal_room"] = body.instant_personal_room
            if body.busy_message is not None:
                new["busy_message"] = body.busy_message
            if defaults is not None:
                md = new.setdefault("meeting_defaults", {})
                for key, value in defaults.model_dump(exclude_unset=True).items():
                    md[key] = value.lower() if key == "region" and value else value
            if policy is not None:
                pol = new.setdefault("policy", {})
                for key, value in policy.model_dump(exclude_unset=True).items():
                    if key not in LISTS:
                        pol[key] = value
                pol.update(lists)
            if body.lobby is not None:
                lobby = body.lobby.model_dump(exclude_unset=True, exclude_none=True)
                new.setdefault("lobby", {}).update(lobby)
            return new

        settings = await self._hosts.patch_settings(host, merge, name=body.name, email=body.email)
        self._directory.forget(host)
        return settings

    async def block_email(self, host: str, email: str, *, verified: bool) -> None:
        """Deny-and-block: later knocks from this email are refused quietly. An
        address only typed in (not ``verified``) blocks only unverified knocks:
        anyone can type someone else's address."""
        address = email.lower()
        name = "block" if verified else "block_unverified"

        def merge(current: dict[str, Any]) -> dict[str, Any]:
            new = copy.deepcopy(current)
            block = new.setdefault("policy", {}).setdefault(name, [])
            if address not in block:
                block.append(address)
            return new

        await self._hosts.patch_settings(host, merge)
        self._directory.forget(host)
