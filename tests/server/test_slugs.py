"""Custom slugs: rules, uniqueness, atomic claims, and what happens to the old link."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from foyer_client import GuestClient, HostClient
from protocol.errors import UnknownLink
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


def _as(foyer: FoyerProcess, bearer: str) -> httpx.Client:
    return httpx.Client(
        base_url=foyer.http_url, timeout=10, headers={"Authorization": f"Bearer {bearer}"}
    )


async def test_a_retired_slug_is_dead_at_once_and_stays_reserved(
    foyer: FoyerProcess, foyer2: FoyerProcess, host: dict[str, Any]
) -> None:
    """A leaked link: the host changes its slug and retires the old one. Every
    way in answers "no longer in use" (the page 410, the API 410, a knock on
    either process refused), nobody else can claim it, and the host can."""
    old, new = host["slug"], _fresh()
    # Both processes have the old slug and the record cached before the change.
    for proc in (foyer, foyer2):
        async with GuestClient(proc.ws_url, old, name="Before") as before:
            await before.cancel()
    with _as(foyer, host["token"]) as api:  # the host's own token will do
        r = api.put(f"/api/hosts/{host['id']}/slug", json={"slug": new, "retire_old": True})
    assert r.status_code == 200 and r.json()["slug"] == new and r.json()["retired"] == [old]

    async with httpx.AsyncClient(base_url=foyer.http_url, timeout=10) as web:
        page = await web.get(f"/l/{old}", follow_redirects=False)
        assert page.status_code == 410 and "no longer in use" in page.text
        info = await web.get(f"/api/links/{old}", headers={"Origin": "https://x.example"})
        assert info.status_code == 410 and info.json()["code"] == "retired_link"
        assert info.headers["access-control-allow-origin"] == "*"
        for proc in (foyer, foyer2):
            with pytest.raises(UnknownLink, match="no longer in use"):
                async with GuestClient(proc.ws_url, old, name="Leaked"):
                    pass
        assert (await web.get(f"/l/{new}")).status_code == 200

        other = foyer.create_host("Mallory")
        assert _put(foyer, other["id"], old).status_code == 409  # never handed to anyone else
        back = _put(foyer, host["id"], old)  # the host takes it back: alive again
        assert back.status_code == 200 and back.json()["retired"] == []
        assert (await web.get(f"/l/{old}")).status_code == 200


def test_keeping_the_old_slug_is_the_default(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    old, new = host["slug"], _fresh()
    r = _put(foyer, host["id"], new)
    assert r.status_code == 200 and r.json()["retired"] == []
    assert httpx.get(f"{foyer.http_url}/l/{old}", follow_redirects=False).status_code == 301


def _check(foyer: FoyerProcess, host: dict[str, Any], slug: str) -> dict[str, Any]:
    with _as(foyer, host["token"]) as api:
        r = api.get(f"/api/hosts/{host['id']}/slug-check", params={"slug": slug})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


@pytest.mark.parametrize(
    ("slug", "failing"),
    [
        ("ab", {"length"}),
        ("x" * 65, {"length"}),
        ("my.name", {"no_periods"}),
        ("my_name", {"characters"}),
        ("sales-dev", {"not_dev"}),
        ("api", {"not_reserved"}),
        ("a.b_dev", {"no_periods", "characters"}),
        ("Fine-Slug-9", set()),
    ],
)
def test_slug_check_names_each_rule(
    foyer: FoyerProcess, host: dict[str, Any], slug: str, failing: set[str]
) -> None:
    answer = _check(foyer, host, slug)
    assert [rule["rule"] for rule in answer["rules"]] == [
        "length",
        "characters",
        "no_periods",
        "not_dev",
        "not_reserved",
        "available",
    ]
    assert {rule["rule"] for rule in answer["rules"] if not rule["ok"]} == failing
    assert answer["ok"] is (not failing)
    assert answer["slug"] == slug.lower()


def test_slug_check_knows_taken_and_own(foyer: FoyerProcess, host: dict[str, Any]) -> None:
    other = foyer.create_host("Grace Hopper")
    taken = _check(foyer, host, other["slug"])
    assert taken["ok"] is False
    assert [r["rule"] for r in taken["rules"] if not r["ok"]] == ["available"]
    assert _check(foyer, host, host["slug"].upper())["ok"] is True  # its own
    assert _check(foyer, host, _fresh())["ok"] is True


def test_the_host_token_reaches_only_its_own_host(foyer: FoyerProcess) -> None:
    ada, grace = foyer.create_host("Ada Lovelace"), foyer.create_host("Grace Hopper")
    with _as(foyer, ada["token"]) as api:
        assert api.get(f"/api/hosts/{ada['id']}").status_code == 200
        assert api.get(f"/api/hosts/{grace['id']}").status_code == 401
        assert api.put(f"/api/hosts/{grace['id']}/slug", json={"slug": _fresh()}).status_code == 401
        assert api.patch(f"/api/hosts/{grace['id']}/settings", json={}).status_code == 401
        check = api.get(f"/api/hosts/{grace['id']}/slug-check", params={"slug": "abc"})
        assert check.status_code == 401
    assert httpx.get(f"{foyer.http_url}/api/hosts/{ada['id']}/slug-check?slug=x").status_code == 401
