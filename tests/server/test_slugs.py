"""Custom slugs: rules, uniqueness, atomic claims, and what happens to the old link."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from foyer_client import GuestClient, HostClient
from protocol.messages import JoinRequest
from tests.support import FoyerProcess


def _put(foyer: FoyerProcess, host: str, slug: str) -> httpx.Response:
    with foyer.api() as api:
        return api.put(f"/api/hosts/{host}/slug", json={"slug": slug})


def _fresh() -> str:
    return "s" + uuid.uuid4().hex[:10]


def test_change_slug(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    slug = _fresh()
    r = _put(foyer, host["id"], slug)
    assert r.status_code == 200
    assert r.json()["slug"] == slug and r.json()["link"].endswith(f"/l/{slug}")
    assert httpx.get(f"{foyer.http_url}/api/links/{slug}").json()["host_name"] == "Ada Lovelace"


@pytest.mark.parametrize(
    ("slug", "rule"),
    [
        ("ab", "3 to 64"),
        ("x" * 65, "3 to 64"),
        ("my.name", "periods"),
        ("my_name", "lowercase letters, digits and hyphens"),
        ("sales-dev", "-dev"),
        ("api", "reserved"),
        ("host", "reserved"),
    ],
)
def test_invalid_slug_says_which_rule(
    foyer: FoyerProcess, host: dict[str, Any], slug: str, rule: str
) -> None:
    r = _put(foyer, host["id"], slug)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_slug" and rule in r.json()["message"]


def test_taken_slug_case_insensitive(foyer: FoyerProcess) -> None:
    a, b = foyer.create_host("A Host"), foyer.create_host("B Host")
    slug = _fresh()
    assert _put(foyer, a["id"], slug).status_code == 200
    r = _put(foyer, b["id"], slug.upper())
    assert r.status_code == 409 and r.json()["code"] == "slug_taken"
    assert _put(foyer, a["id"], slug.upper()).status_code == 200  # its own: fine


def test_concurrent_claims_exactly_one_wins(foyer: FoyerProcess) -> None:
    hosts = [foyer.create_host(f"Racer {i}") for i in range(8)]
    slug = _fresh()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda h: _put(foyer, h["id"], slug).status_code, hosts))
    assert sorted(codes) == [200] + [409] * 7


async def test_old_link_keeps_reaching_the_same_host(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    old, new = host["slug"], _fresh()
    assert _put(foyer, host["id"], new).status_code == 200
    async with httpx.AsyncClient() as client:
        info = (await client.get(f"{foyer.http_url}/api/links/{old}")).json()
    assert info["slug"] == new  # the canonical slug
    other = foyer.create_host("Someone Else")
    assert _put(foyer, other["id"], old).status_code == 409  # never reassigned
    async with (
        HostClient(foyer.ws_url, host["token"]) as device,
        GuestClient(foyer.ws_url, old, name="Old Link User"),
    ):
        jr = await device.wait_for(JoinRequest)
        assert jr.guest["name"] == "Old Link User"


def test_guest_page_redirects_old_slug_and_knows_unknown(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    old, new = host["slug"], _fresh()
    assert _put(foyer, host["id"], new).status_code == 200
    r = httpx.get(f"{foyer.http_url}/l/{old}?title=Hi", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == f"/l/{new}?title=Hi"
    assert httpx.get(f"{foyer.http_url}/l/{new}").status_code == 200
    assert httpx.get(f"{foyer.http_url}/l/never-was-a-slug").status_code == 404


def test_link_info_is_readable_from_other_origins(
    foyer: FoyerProcess, host: dict[str, Any]
) -> None:
    r = httpx.get(
        f"{foyer.http_url}/api/links/{host['slug']}",
        headers={"Origin": "https://elsewhere.example"},
    )
    assert r.headers["access-control-allow-origin"] == "*"
