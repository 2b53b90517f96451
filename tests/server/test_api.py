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
