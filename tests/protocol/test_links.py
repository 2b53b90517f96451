"""Slug rules and the link-option sanitiser, with property-based tests."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import InvalidSlug
from protocol.links import (
    OPTION_NAMES,
    RESERVED_SLUGS,
    SLUG_MAX,
    TITLE_STRIP,
    resolve_options,
    sanitise_options,
    slug_base,
    slug_rules,
    slug_with_suffix,
    validate_slug,
)


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("ab", "3 to 64"),
        ("a" * 65, "3 to 64"),
        ("ada.lovelace", "periods"),
        ("ada_lovelace", "lowercase letters, digits and hyphens"),
        ("ada lovelace", "lowercase letters, digits and hyphens"),
        ("ada-dev", "-dev"),
        ("api", "reserved"),
        ("", "3 to 64"),
    ],
)
def test_slug_rules_name_the_rule(raw: str, rule: str) -> None:
    with pytest.raises(InvalidSlug, match=rule):
        validate_slug(raw)


def test_slug_normalised_to_lowercase() -> None:
    assert validate_slug("Ada-Lovelace") == "ada-lovelace"
    assert validate_slug("dev-ada") == "dev-ada"


@given(st.text(max_size=200))
def test_slug_base_always_valid(name: str) -> None:
    slug = slug_base(name)
    assert validate_slug(slug) == slug
    assert validate_slug(slug_with_suffix(slug, "a1b2")) == slug_with_suffix(slug, "a1b2")


@given(st.text(max_size=80))
def test_validate_slug_accepts_only_rule_abiding(raw: str) -> None:
    try:
        slug = validate_slug(raw)
    except InvalidSlug:
        return
    assert 3 <= len(slug) <= SLUG_MAX
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not slug.endswith("-dev") and slug not in RESERVED_SLUGS


def test_slug_base_readable() -> None:
    assert slug_base("Ada Lovelace") == "ada-lovelace"
    assert slug_base("Zoë O'Brien") == "zoe-o-brien"
    assert slug_base("Bob Dev") == "bob-dev-link"


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=50),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=3),
)


@given(st.dictionaries(st.sampled_from([*OPTION_NAMES, "junk", "x"]), values))
def test_sanitiser_never_raises_and_reports_drops(raw: dict[str, Any]) -> None:
    clean, ignored = sanitise_options(raw)
    assert set(clean) | set(ignored) <= set(raw)
    assert not set(clean) & set(ignored)
    if "title" in clean:
        assert clean["title"] and not set(clean["title"]) & TITLE_STRIP
    if "duration" in clean:
        assert isinstance(clean["duration"], int) and 1 <= clean["duration"] <= 1440
    for name in ("announce", "autodelete"):
        if name in clean:
            assert isinstance(clean[name], bool)
    final = resolve_options(clean, {}, "Meeting with Ada")
    assert final["title"] and final["duration"]


@given(st.text(max_size=300))
def test_title_never_keeps_forbidden_chars(title: str) -> None:
    clean, _ = sanitise_options({"title": title})
    assert not set(clean.get("title", "")) & TITLE_STRIP
    final = resolve_options(clean, {}, "auto title")
    assert final["title"].strip()


def test_examples() -> None:
    rel = str(uuid.uuid4())
    clean, ignored = sanitise_options(
        {
            "title": "Q3 review: {draft} #1",
            "duration": "45",
            "region": "EU-West",
            "relationship": rel,
            "announce": "true",
            "autodelete": False,
            "recording": "cloud",
            "colour": "red",
        }
    )
    assert clean == {
        "title": "Q3reviewdraft1",
        "duration": 45,
        "region": "eu-west",
        "relationship": rel,
        "announce": True,
        "autodelete": False,
    }
    assert ignored == ["colour", "recording"]
    clean, ignored = sanitise_options({"title": "/:;", "duration": 0})
    assert clean == {} and ignored == ["duration", "title"]
    assert resolve_options(clean, {"duration": 50}, "Auto")["title"] == "Auto"
    assert resolve_options(clean, {"duration": 50}, "Auto")["duration"] == 50


SLUGGISH = st.text(alphabet="abcXYZ019-._ é", max_size=70) | st.sampled_from(
    [*RESERVED_SLUGS, "sales-dev", "ab", "a" * 64, "a" * 65]
)


@given(SLUGGISH)
def test_slug_rules_pass_exactly_when_the_slug_is_valid(raw: str) -> None:
    """The console's rule list and the server's check never disagree."""
    rules = slug_rules(raw)
    try:
        validate_slug(raw)
        valid = True
    except InvalidSlug:
        valid = False
    assert all(rules.values()) is valid, rules


@pytest.mark.parametrize(
    ("raw", "failing"),
    [
        ("ab", {"length"}),
        ("ada.lovelace", {"no_periods"}),
        ("ada_lovelace", {"characters"}),
        ("ada-dev", {"not_dev"}),
        ("help", {"not_reserved"}),
        ("Ada-Lovelace", set()),
    ],
)
def test_slug_rules_name_each_failing_rule(raw: str, failing: set[str]) -> None:
    assert {name for name, ok in slug_rules(raw).items() if not ok} == failing
