"""Foyer's OAuth authorization server over HTTP, against a real ``foyer serve``
and the suite's Valkey: the client registry, the consent form (a GET never
grants; CSRF), the code exchange with PKCE S256, single-use codes, refresh,
revocation, and the connection each grant makes (issue 13, point 2). The
browser's side of the consent page is tests/browser/test_oauth_consent.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis
from starlette.requests import Request

from server.access.oauth import AuthorizationServer
from server.meetings.connections import Connections
from server.meetings.connections import key as connection_key
from server.storage import scripts
from server.storage.batcher import Batcher
from server.storage.oauth import OAuthStore, code_key
from server.web.oauth import bearer_host
from tests.oauth_client import (
    App,
    Pkce,
    code_for,
    connection,
    consent_form,
    decide,
    query_of,
    register,
)
from tests.support import FoyerProcess

REDIRECT = "http://127.0.0.1:9/callback"  # never followed here: the tests read Location


@pytest.fixture
def app(foyer: FoyerProcess) -> App:
    return register(foyer, REDIRECT)


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


def host_behind(redis_url: str, token: str) -> str | None:
    """``bearer_host`` on a request carrying ``token``, with an authorization
    server of this process on the same Valkey."""

    async def run() -> str | None:
        client = Redis.from_url(redis_url)
        batch = Batcher(client, scripts.load())
        await batch.start()
        try:
            server = AuthorizationServer(OAuthStore(batch), Connections(batch), "unused")
            state = SimpleNamespace(web=SimpleNamespace(oauth=server))
            scope = {
                "type": "http",
                "headers": [(b"authorization", f"Bearer {token}".encode())],
                "app": SimpleNamespace(state=state),
            }
            return await bearer_host(Request(scope))
        finally:
            await batch.stop()
            await client.aclose()

    return asyncio.run(run())


def test_metadata_says_what_the_server_does(foyer: FoyerProcess) -> None:
    doc = httpx.get(f"{foyer.http_url}/.well-known/oauth-authorization-server").json()
    assert doc["issuer"] == foyer.http_url
    assert doc["authorization_endpoint"] == f"{foyer.http_url}/oauth/authorize"
    assert doc["token_endpoint"] == f"{foyer.http_url}/oauth/token"
    assert doc["revocation_endpoint"] == f"{foyer.http_url}/oauth/revoke"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["scopes_supported"] == ["meetings:write"]


def test_clients_are_registered_read_and_removed_with_the_api_key(foyer: FoyerProcess) -> None:
    body = {"workspace": "acme", "name": "Acme Rooms", "redirect_uris": [REDIRECT]}
    assert httpx.post(f"{foyer.http_url}/api/oauth/clients", json=body).status_code == 401
    with foyer.api() as api:
        created = api.post("/api/oauth/clients", json=body)
        assert created.status_code == 201
        client = created.json()
        assert client["client_secret"] and client["client_id"].startswith("fc_")
        shown = api.get(f"/api/oauth/clients/{client['client_id']}").json()
        assert shown == {k: v for k, v in client.items() if k != "client_secret"}
        assert shown["redirect_uris"] == [REDIRECT] and shown["workspace"] == "acme"
        assert api.delete(f"/api/oauth/clients/{client['client_id']}").status_code == 204
        gone = api.get(f"/api/oauth/clients/{client['client_id']}")
        assert gone.status_code == 404 and gone.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://app.example.com/cb", "https"),
        ("https://app.example.com/cb#frag", "fragment"),
        ("/cb", "absolute"),
        ("javascript:alert(1)", "absolute"),
        ("https://user@app.example.com/cb", "plain host"),
        ("https://app.example.com;script-src/cb", "plain host"),
    ],
)
def test_a_redirect_uri_must_be_safe(foyer: FoyerProcess, uri: str, why: str) -> None:
    body = {"workspace": "acme", "name": "Acme", "redirect_uris": [uri]}
    with foyer.api() as api:
        refused = api.post("/api/oauth/clients", json=body)
    assert refused.status_code == 422 and why in refused.json()["message"]


def test_a_host_connects_with_pkce_and_gets_a_bearer_token(
    app: App, host: dict[str, Any], sync_redis: redis.Redis, redis_url: str
) -> None:
    page, answer = decide(app.foyer, app.authorize_url(), "allow", host["token"])
    # The page names the app and lets the form redirect to the app (CSP form-action).
    assert "Allow Acme Rooms to create meeting links for you?" in page.text
    assert "form-action 'self' http://127.0.0.1:9" in page.headers["content-security-policy"]
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    params = query_of(location)
    assert params["state"] == app.state and params["code"]
    assert params["iss"] == app.foyer.http_url  # RFC 9207
    # Short-lived: the code lives 60 s at most.
    assert 0 < sync_redis.pttl(code_key(params["code"])) <= 60_000
    assert connection(sync_redis, app.workspace, host["id"]) is None  # not before the exchange

    issued = app.exchange(params["code"])
    assert issued.status_code == 200, issued.text
    token = issued.json()
    assert token["token_type"] == "Bearer" and token["scope"] == "meetings:write"
    assert token["access_token"] and token["refresh_token"] and token["expires_in"] == 3600
    assert issued.headers["cache-control"] == "no-store"
    provider, account, _ = connection(sync_redis, app.workspace, host["id"]) or [None] * 3
    assert (provider, account) == ("foyer", host["id"])
    assert host_behind(redis_url, token["access_token"]) == host["id"]
    assert host_behind(redis_url, token["refresh_token"]) is None  # not an access token
    assert host_behind(redis_url, host["token"]) is None  # a host JWT is not an OAuth token


def test_a_get_never_grants(app: App, host: dict[str, Any]) -> None:
    url = app.authorize_url(token=host["token"], decision="allow")
    for method in ("GET", "HEAD"):
        page = httpx.request(method, url, timeout=10)
        assert page.status_code == 200 and "location" not in page.headers


def test_a_wrong_verifier_is_invalid_grant(app: App, host: dict[str, Any]) -> None:
    code = code_for(app, host["token"])
    wrong = app.exchange(code, verifier=Pkce.new().verifier)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    missing = app.post(
        "/oauth/token",
        {"grant_type": "authorization_code", "code": code, "redirect_uri": app.redirect_uri},
    )
    assert missing.json()["error"] == "invalid_request"  # no verifier at all
    assert app.exchange(code).status_code == 200  # the right one still works (not burnt)


def test_a_code_works_once_and_a_second_use_revokes_the_first(
    app: App, host: dict[str, Any], sync_redis: redis.Redis, redis_url: str
) -> None:
    code = code_for(app, host["token"])
    first = app.exchange(code)
    assert first.status_code == 200
    again = app.exchange(code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # RFC 6749 section 4.1.2: the tokens issued from the code are revoked.
    assert host_behind(redis_url, first.json()["access_token"]) is None
    assert connection(sync_redis, app.workspace, host["id"]) is None


async def test_two_exchanges_at_once_one_wins(app: App, host: dict[str, Any]) -> None:
    code = code_for(app, host["token"])
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app.redirect_uri,
        "code_verifier": app.pkce.verifier,
    }
    async with httpx.AsyncClient(timeout=10, auth=(app.client_id, app.client_secret)) as client:
        answers = await asyncio.gather(
            *(client.post(f"{app.foyer.http_url}/oauth/token", data=data) for _ in range(4))
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 400, 400, 400]


def test_the_code_is_bound_to_its_client_and_redirect_uri(
    foyer: FoyerProcess, app: App, host: dict[str, Any]
) -> None:
    other = register(foyer, REDIRECT, workspace=app.workspace)
    code = code_for(app, host["token"])
    stolen = other.exchange(code, verifier=app.pkce.verifier)
    assert stolen.json()["error"] == "invalid_grant"
    moved = app.exchange(code, redirect_uri="http://127.0.0.1:9/elsewhere")
    assert moved.status_code == 400 and moved.json()["error"] == "invalid_grant"
    wrong_secret = httpx.post(
        f"{foyer.http_url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "code_verifier": "x" * 43},
        auth=(app.client_id, "not-the-secret"),
    )
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    # The secret in the body works as well as HTTP Basic (client_secret_post).
    by_body = httpx.post(
        f"{foyer.http_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "code_verifier": app.pkce.verifier,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
        },
    )
    assert by_body.status_code == 200, by_body.text


def test_deny_sends_access_denied(app: App, host: dict[str, Any], sync_redis: redis.Redis) -> None:
    _, answer = decide(app.foyer, app.authorize_url(), "deny", "")
    assert answer.status_code == 303
    params = query_of(answer.headers["location"])
    assert params["error"] == "access_denied" and params["state"] == app.state
    assert "code" not in params
    assert connection(sync_redis, app.workspace, host["id"]) is None


def test_an_unregistered_redirect_uri_gets_a_page_not_a_redirect(app: App) -> None:
    for url, why in (
        (app.authorize_url(redirect_uri="http://127.0.0.1:9/evil"), "never registered"),
        (app.authorize_url(client_id="fc_nobody"), "not registered"),
        (app.authorize_url(client_id=None), "not registered"),
        (app.authorize_url() + "&state=again", "repeated"),
    ):
        page = httpx.get(url, timeout=10)
        assert page.status_code == 400 and "location" not in page.headers
        assert 'data-state="refused"' in page.text and why in page.text


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # means plain (RFC 7636)
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"scope": "meetings:read"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_a_bad_request_goes_back_to_the_client_with_its_error(
    app: App, overrides: dict[str, str | None], error: str
) -> None:
    answer = httpx.get(app.authorize_url(**overrides), timeout=10)
    assert answer.status_code in (302, 303)
    params = query_of(answer.headers["location"])
    assert answer.headers["location"].startswith(REDIRECT)
    assert params["error"] == error and params["state"] == app.state


def test_the_form_needs_its_cookie_and_a_valid_host_token(app: App, host: dict[str, Any]) -> None:
    with httpx.Client(timeout=10) as browser:
        page = browser.get(app.authorize_url())
        form = consent_form(page)
        # Posted without the page's cookie (another site, another browser): refused.
        forged = httpx.post(
            f"{app.foyer.http_url}/oauth/authorize",
            data={"form": form, "token": host["token"], "decision": "allow"},
        )
        assert forged.status_code == 400 and "location" not in forged.headers
        tampered = browser.post(
            f"{app.foyer.http_url}/oauth/authorize",
            data={"form": form[:-4] + "AAAA", "token": host["token"], "decision": "allow"},
        )
        assert tampered.status_code == 400 and "location" not in tampered.headers
        bad_token = browser.post(
            f"{app.foyer.http_url}/oauth/authorize",
            data={"form": form, "token": "not-a-token", "decision": "allow"},
        )
        assert bad_token.status_code == 401 and "location" not in bad_token.headers
        assert 'id="problem"' in bad_token.text and 'id="allow"' in bad_token.text
        # The page it answered with works.
        answer = browser.post(
            f"{app.foyer.http_url}/oauth/authorize",
            data={"form": consent_form(bad_token), "token": host["token"], "decision": "allow"},
        )
    assert answer.status_code == 303 and query_of(answer.headers["location"])["code"]


def test_a_refresh_rotates_the_tokens(app: App, host: dict[str, Any], redis_url: str) -> None:
    first = app.exchange(code_for(app, host["token"])).json()
    refreshed = app.post(
        "/oauth/token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert host_behind(redis_url, second["access_token"]) == host["id"]
    assert host_behind(redis_url, first["access_token"]) is None
    reused = app.post(
        "/oauth/token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_revoking_disconnects(
    app: App, host: dict[str, Any], sync_redis: redis.Redis, redis_url: str
) -> None:
    token = app.exchange(code_for(app, host["token"])).json()
    assert connection(sync_redis, app.workspace, host["id"]) is not None
    unknown = app.post("/oauth/revoke", {"token": "no-such-token"})
    assert unknown.status_code == 200  # RFC 7009 section 2.2
    assert connection(sync_redis, app.workspace, host["id"]) is not None
    revoked = app.post("/oauth/revoke", {"token": token["refresh_token"]})
    assert revoked.status_code == 200
    assert connection(sync_redis, app.workspace, host["id"]) is None
    assert host_behind(redis_url, token["access_token"]) is None
    gone = app.post(
        "/oauth/token", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    )
    assert gone.json()["error"] == "invalid_grant"


def test_another_client_cannot_revoke_a_token(
    foyer: FoyerProcess, app: App, host: dict[str, Any], redis_url: str
) -> None:
    token = app.exchange(code_for(app, host["token"])).json()
    other = register(foyer, REDIRECT)
    assert other.post("/oauth/revoke", {"token": token["access_token"]}).status_code == 200
    assert host_behind(redis_url, token["access_token"]) == host["id"]
    bad = httpx.post(
        f"{foyer.http_url}/oauth/revoke",
        data={"token": token["access_token"]},
        auth=(app.client_id, "wrong"),
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


def test_a_reconnect_replaces_the_grant(
    app: App, host: dict[str, Any], sync_redis: redis.Redis, redis_url: str
) -> None:
    first = app.exchange(code_for(app, host["token"])).json()
    app.pkce = Pkce.new()
    second = app.exchange(code_for(app, host["token"])).json()
    assert host_behind(redis_url, first["access_token"]) is None
    assert host_behind(redis_url, second["access_token"]) == host["id"]
    assert (connection(sync_redis, app.workspace, host["id"]) or [None])[0] == "foyer"


def test_a_token_ends_with_its_connection(
    app: App, host: dict[str, Any], redis_url: str, sync_redis: redis.Redis
) -> None:
    """The connection deleted (or replaced) by another path, say the
    meetings API's DELETE: the token no longer acts for the host."""
    token = app.exchange(code_for(app, host["token"])).json()
    assert host_behind(redis_url, token["access_token"]) == host["id"]
    sync_redis.delete(connection_key(app.workspace, host["id"]))
    assert host_behind(redis_url, token["access_token"]) is None
    refresh = app.post(
        "/oauth/token", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_a_token_ends_when_the_connection_is_replaced(
    app: App, host: dict[str, Any], redis_url: str
) -> None:
    """Replaced through the meetings API, even by a ``foyer`` connection
    again: the token was bound to the connection its grant made."""
    token = app.exchange(code_for(app, host["token"])).json()
    path = f"/api/workspaces/{app.workspace}/users/{host['id']}/connection"
    with app.foyer.api() as api:
        shown = api.get(path).json()
        assert shown["provider"] == "foyer"
        put = api.put(path, json={"provider": "foyer", "account": host["id"]})
        assert put.status_code == 200, put.text
    assert host_behind(redis_url, token["access_token"]) is None
    refresh = app.post(
        "/oauth/token", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    )
    assert refresh.json()["error"] == "invalid_grant"


def test_revoke_for_and_a_removed_client_end_the_tokens(
    foyer: FoyerProcess, app: App, host: dict[str, Any], redis_url: str
) -> None:
    token = app.exchange(code_for(app, host["token"])).json()

    async def revoke_for() -> bool:
        client = Redis.from_url(redis_url)
        batch = Batcher(client, scripts.load())
        await batch.start()
        try:
            server = AuthorizationServer(OAuthStore(batch), Connections(batch), "unused")
            return await server.revoke_for(app.workspace, host["id"])
        finally:
            await batch.stop()
            await client.aclose()

    assert asyncio.run(revoke_for()) is True
    assert host_behind(redis_url, token["access_token"]) is None
    assert asyncio.run(revoke_for()) is False

    app.pkce = Pkce.new()
    token = app.exchange(code_for(app, host["token"])).json()
    with foyer.api() as api:
        assert api.delete(f"/api/oauth/clients/{app.client_id}").status_code == 204
    assert host_behind(redis_url, token["access_token"]) is None


def test_a_public_client_connects_with_pkce_alone(
    foyer: FoyerProcess, host: dict[str, Any], sync_redis: redis.Redis, redis_url: str
) -> None:
    workspace = "ws-public"
    with foyer.api() as api:
        created = api.post(
            "/api/oauth/clients",
            json={
                "workspace": workspace,
                "name": "Acme Desktop",
                "redirect_uris": [REDIRECT],
                "public": True,
            },
        )
    assert created.status_code == 201 and created.json()["public"] is True
    assert "client_secret" not in created.json()
    app = App(foyer, created.json()["client_id"], "", workspace, REDIRECT)
    code = code_for(app, host["token"])
    token_url = f"{foyer.http_url}/oauth/token"
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": app.pkce.verifier,
    }
    # No client_id: nobody is named, so nobody is authenticated.
    assert httpx.post(token_url, data=data).json()["error"] == "invalid_client"
    wrong = httpx.post(
        token_url, data={**data, "client_id": app.client_id, "code_verifier": "x" * 43}
    )
    assert wrong.json()["error"] == "invalid_grant"
    issued = httpx.post(token_url, data={**data, "client_id": app.client_id})
    assert issued.status_code == 200, issued.text
    assert host_behind(redis_url, issued.json()["access_token"]) == host["id"]
    assert (connection(sync_redis, workspace, host["id"]) or [None])[0] == "foyer"
    # A made-up secret does not turn it into a confidential client.
    basic = httpx.post(token_url, data=data, auth=(app.client_id, "guess"))
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
    revoked = httpx.post(
        f"{foyer.http_url}/oauth/revoke",
        data={"token": issued.json()["refresh_token"], "client_id": app.client_id},
    )
    assert revoked.status_code == 200
    assert connection(sync_redis, workspace, host["id"]) is None


def test_the_test_clients_pkce_is_rfc7636_s256() -> None:
    """The test client's S256, against RFC 7636 appendix B's example."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert Pkce.challenge_of(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert 43 <= len(Pkce.new().verifier) <= 128
