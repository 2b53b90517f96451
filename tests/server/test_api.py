"""The HTTP API: JSON in and out, errors as {code, message}."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support import FoyerProcess


def _id() -> str:
    return "api-" + uuid.uuid4().hex[:10]


def test_create_get_token_and_link(foyer: FoyerProcess) -> None:
    host_id = _id()
    with foyer.api() as api:
        r = api.post(
            "/api/hosts", json={"id": host_id, "name": "Grace Hopper", "email": "grace@example.com"}
        )
        assert r.status_code == 201
        body = r.json()
        assert body["id"] == host_id and body["email"] == "grace@example.com"
        assert body["slug"].startswith("grace-hopper")
        assert body["link"] == f"{foyer.http_url}/l/{body['slug']}"
        assert api.get(f"/api/hosts/{host_id}").json()["slug"] == body["slug"]
        token = api.post(f"/api/hosts/{host_id}/token").json()["token"]
        assert token.count(".") == 2
        dup = api.post("/api/hosts", json={"id": host_id, "name": "Other"})
        assert dup.status_code == 409 and dup.json()["code"] == "conflict"
    link = httpx.get(f"{foyer.http_url}/api/links/{body['slug']}").json()
    assert link == {
        "slug": body["slug"],
        "host_name": "Grace Hopper",
        "host_online": False,
        "host_state": "available",  # addition: what the host said it is doing
        "embed_allowed": True,  # no Origin header: not a browser on another site
    }


def test_slugs_unique_from_same_name(foyer: FoyerProcess) -> None:
    slugs = {foyer.create_host("Same Name")["slug"] for _ in range(3)}
    assert len(slugs) == 3 and all(s.startswith("same-name") for s in slugs)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}]
)
def test_api_key_required(foyer: FoyerProcess, headers: dict[str, str]) -> None:
    r = httpx.post(f"{foyer.http_url}/api/hosts", json={"id": _id(), "name": "X"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized" and r.json()["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"id": "bad id!", "name": "X"}', 422),
        (b'{"id": "ok"}', 422),
        (b'{"id": "ok", "name": ""}', 422),
        (b"[]", 422),
    ],
)
def test_bad_bodies(foyer: FoyerProcess, body: bytes, status: int) -> None:
    with foyer.api() as api:
        r = api.post("/api/hosts", content=body)
    assert r.status_code == status
    assert set(r.json()) == {"code", "message"}


def test_unknown_things_are_json_404(foyer: FoyerProcess) -> None:
    with foyer.api() as api:
        assert api.get("/api/hosts/nobody-here").json()["code"] == "not_found"
        r = api.get("/api/nothing")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        r = api.delete("/api/hosts")
        assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = httpx.get(f"{foyer.http_url}/api/links/no-such-slug")
    assert r.status_code == 404 and r.json()["code"] == "unknown_link"


def test_healthz(foyer: FoyerProcess) -> None:
    assert httpx.get(f"{foyer.http_url}/healthz").status_code == 200


def test_host_view_has_settings(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    with foyer.api() as api:
        body = api.get(f"/api/hosts/{host['id']}").json()
    assert body["settings"]["policy"] == {
        "bypass": "nobody",
        "locked": False,
        "allow": [],
        "block": [],
        "block_unverified": [],
    }


def test_a_new_host_shows_every_setting_in_effect(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    """Defaults are shown, not left for the client to guess (a console read
    a missing email_mode as "away" even when email_notifications said never)."""
    with foyer.api() as api:
        settings = api.get(f"/api/hosts/{host['id']}").json()["settings"]
    assert settings["email_mode"] == "away" and settings["email_notifications"] is True
    assert settings["instant_personal_room"] is False
    assert settings["lobby"] == {
        "max_wait_s": 0,
        "max_wait_message": "",
        "raid_threshold": 20,
        "raid_autolock": False,
        "deny_cooldown_s": 0,
    }


@pytest.mark.parametrize(
    ("patches", "mode"),
    [
        ([{"email_notifications": False}], "never"),
        ([{"email_mode": "always"}, {"email_notifications": False}], "never"),
        ([{"email_mode": "never"}, {"email_notifications": True}], "away"),
        ([{"email_mode": "always"}, {"email_notifications": True}], "always"),
        ([{"email_notifications": False}, {"email_mode": "always"}], "always"),
        ([{"email_mode": "never", "email_notifications": False}], "never"),
    ],
)
def test_both_email_spellings_agree(
    foyer: FoyerProcess, host: dict[str, Any], patches: list[dict[str, Any]], mode: str
) -> None:
    with foyer.api() as api:
        for patch in patches:
            r = api.patch(f"/api/hosts/{host['id']}/settings", json=patch)
            assert r.status_code == 200, r.text
        settings = r.json()["settings"]
        assert settings == api.get(f"/api/hosts/{host['id']}").json()["settings"]
    assert (settings["email_mode"], settings["email_notifications"]) == (mode, mode != "never")


def test_email_spellings_that_disagree_are_refused(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    with foyer.api() as api:
        r = api.patch(
            f"/api/hosts/{host['id']}/settings",
            json={"email_mode": "always", "email_notifications": False},
        )
        assert r.status_code == 422
        assert r.json() == {
            "code": "invalid",
            "message": "email_notifications and email_mode disagree: send one",
        }
        assert api.get(f"/api/hosts/{host['id']}").json()["settings"]["email_mode"] == "away"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/hosts/{host}/settings", "PATCH"),
        ("GET", "/api/hosts/{host}/token", "POST"),
        # Two routes serve this path (GET and DELETE): both are allowed.
        ("PUT", "/api/webhooks/w-1", "DELETE, GET, HEAD"),
    ],
)
def test_method_not_allowed_says_what_is(
    foyer: FoyerProcess, host: dict[str, Any], method: str, path: str, allowed: str
) -> None:
    with foyer.api() as api:
        r = api.request(method, path.format(host=host["id"]))
    assert r.status_code == 405
    assert r.json() == {"code": "method_not_allowed", "message": "method not allowed"}
    assert r.headers["allow"] == allowed
