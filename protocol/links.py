"""Personal-link rules: slugs and link options (DESIGN.md, Personal link).

Slugs: lowercase letters, digits and hyphens; no periods; not ending in
``-dev``; 3..64 characters; not one of our own route words. Options come
from a link's query string or a knock and are sanitised here: a bad value is
dropped (the host default is used) and its name is reported, so a bad link
never stops a guest from knocking.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from protocol.errors import InvalidSlug

SLUG_MIN, SLUG_MAX = 3, 64
SLUG_RE = re.compile(r"^[a-z0-9-]+$")
RESERVED_SLUGS = frozenset(
    {
        "api",
        "ws",
        "l",
        "host",
        "hosts",
        "static",
        "healthz",
        "openapi",
        "openapi-json",
        "docs",
        "admin",
        "login",
        "logout",
        "signup",
        "settings",
        "www",
        "foyer",
        "help",
        "about",
        "new",
        "me",
        "widget",
        "metrics",
        "status",
    }
)

TITLE_STRIP = set("&$+,/:;=?@# <>[]{}|\\^%")
TITLE_MAX = 200
DURATION_MIN, DURATION_MAX = 1, 24 * 60
DEFAULT_DURATION = 30
RECORDING = ("automatic", "manual", "disabled")
OPTION_NAMES = (
    "title",
    "duration",
    "region",
    "relationship",
    "announce",
    "autodelete",
    "recording",
)
DEFAULT_REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-southeast", "ap-northeast")


def validate_slug(raw: str) -> str:
    """The normalised (lowercased) slug, or ``InvalidSlug`` naming the rule."""
    if not isinstance(raw, str):
        raise InvalidSlug("the slug must be a string")
    slug = raw.strip().lower()
    if "." in slug:
        raise InvalidSlug("the slug must not contain periods")
    if not SLUG_RE.match(slug or "-"):
        if not slug:
            raise InvalidSlug(f"the slug must be {SLUG_MIN} to {SLUG_MAX} characters")
        raise InvalidSlug("the slug may hold only lowercase letters, digits and hyphens")
    if not SLUG_MIN <= len(slug) <= SLUG_MAX:
        raise InvalidSlug(f"the slug must be {SLUG_MIN} to {SLUG_MAX} characters")
    if slug.endswith("-dev"):
        raise InvalidSlug("the slug must not end in '-dev'")
    if slug in RESERVED_SLUGS:
        raise InvalidSlug(f"'{slug}' is reserved")
    return slug


# The rules a custom slug must pass, in the order a person reads them; each
# name is a catalogue key (``slug_rule.<name>``) on the console.
SLUG_RULES = ("length", "characters", "no_periods", "not_dev", "not_reserved")


def slug_rules(raw: str) -> dict[str, bool]:
    """Each rule of ``validate_slug`` with whether ``raw`` passes it, so a form
    can name every rule as the user types (``taken`` is the store's to say)."""
    slug = raw.strip().lower()
    return {
        "length": SLUG_MIN <= len(slug) <= SLUG_MAX,
        "characters": bool(SLUG_RE.match(slug.replace(".", ""))) or not slug,
        "no_periods": "." not in slug,
        "not_dev": not slug.endswith("-dev"),
        "not_reserved": slug not in RESERVED_SLUGS,
    }


def slug_base(name: str) -> str:
    """A readable slug made from a display name (``Ada Lovelace`` -> ``ada-lovelace``)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:48].strip("-")
    if len(slug) < SLUG_MIN:
        slug = f"host-{slug}".strip("-") if slug else "host"
    if slug.endswith("-dev") or slug in RESERVED_SLUGS:
        slug = f"{slug}-link"
    return slug


def slug_with_suffix(base: str, suffix: str) -> str:
    """``base`` plus a short suffix, still within the length rule."""
    return f"{base[: SLUG_MAX - len(suffix) - 1].rstrip('-')}-{suffix}"


# Control characters and lone surrogates (see protocol.messages.safe_text).
_UNSAFE_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_title(raw: str) -> str:
    """The title with the forbidden characters removed (may come out empty)."""
    kept = "".join(ch for ch in raw if ch not in TITLE_STRIP and ch.isprintable())
    return kept[:TITLE_MAX]


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _as_duration(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and DURATION_MIN <= value <= DURATION_MAX:
        return value
    return None


def sanitise_options(
    raw: Mapping[str, Any] | None, regions: Iterable[str] = DEFAULT_REGIONS
) -> tuple[dict[str, Any], list[str]]:
    """Keep the valid link options; return them and the names that were dropped.

    Unknown names are dropped and reported too. Nothing here raises: a bad
    link still lets the guest knock.
    """
    clean: dict[str, Any] = {}
    ignored: list[str] = []
    if not raw:
        return clean, ignored
    region_set = set(regions)
    for name, value in raw.items():
        name = str(name)[:40]
        if _UNSAFE_NAME.search(name):
            ignored.append("(unreadable name)")  # never echo control characters back
            continue
        kept: Any = None
        if name == "title" and isinstance(value, str):
            kept = clean_title(value) or None
        elif name == "duration":
            kept = _as_duration(value)
        elif name == "region" and isinstance(value, str) and value.lower() in region_set:
            kept = value.lower()
        elif name == "relationship" and isinstance(value, str):
            try:
                kept = str(uuid.UUID(value.strip()))
            except ValueError:
                kept = None
        elif name in ("announce", "autodelete"):
            kept = _as_bool(value)
        elif name == "recording" and isinstance(value, str) and value.lower() in RECORDING:
            kept = value.lower()
        if kept is None:
            if name != "title" or value != "":
                ignored.append(name)
        else:
            clean[name] = kept
    return clean, sorted(set(ignored))


def resolve_options(
    given: Mapping[str, Any], defaults: Mapping[str, Any], auto_title: str
) -> dict[str, Any]:
    """The options a meeting gets: given ones, else host defaults, else ours."""
    out: dict[str, Any] = {
        "title": auto_title,
        "duration": DEFAULT_DURATION,
        "announce": False,
        "autodelete": False,
        "recording": "manual",
    }
    out.update({k: v for k, v in defaults.items() if k in OPTION_NAMES and v is not None})
    out.update(given)
    if not out.get("title"):
        out["title"] = auto_title
    return out
