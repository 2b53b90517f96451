"""Connecting an account, in Chromium: a workspace app (a tiny HTTP receiver on
127.0.0.1 as its redirect URI) sends the host to Foyer's consent page with a
real PKCE pair; the host pastes its token and clicks Allow (or Deny); the
browser lands back at the app, which exchanges the code over HTTP; the
connection is made, and revoking the token ends it (issue 13, point 2)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import screenshot
from tests.oauth_client import App, Pkce, Receiver, connection, register
from tests.support import FoyerProcess


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as app_site:
        yield app_site


@pytest.fixture
def app(foyer: FoyerProcess, receiver: Receiver) -> App:
    return register(foyer, receiver.url, name="Acme Rooms")


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


def _consent(context: BrowserContext, app: App) -> Page:
    page = context.new_page()
    page.goto(app.authorize_url())
    expect(page.locator("#heading")).to_have_text(
        "Allow Acme Rooms to create meeting links for you?"
    )
    return page


def _back_at_the_app(page: Page, receiver: Receiver) -> dict[str, str]:
    """Wait for the browser to land on the app's redirect URI."""
    expect(page.locator("#back")).to_be_visible()
    assert receiver.arrived.wait(10)
    assert page.url.startswith(receiver.url + "?")
    return receiver.hits[-1]


def test_a_host_allows_and_the_app_gets_its_connection(
    context: BrowserContext,
    page_errors: list[str],
    app: App,
    receiver: Receiver,
    host: dict[str, Any],
    sync_redis: redis.Redis,
) -> None:
    page = _consent(context, app)
    expect(page.locator("#lead")).to_contain_text("meetings:write")
    screenshot(page, "oauth-consent")
    assert receiver.hits == []  # showing the page granted nothing
    page.fill("#token", host["token"])
    page.click("#allow")
    back = _back_at_the_app(page, receiver)
    assert back["state"] == app.state and back["code"]
    assert "token" not in page.url and host["token"] not in page.url

    wrong = app.exchange(back["code"], verifier=Pkce.new().verifier)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    issued = app.exchange(back["code"])
    assert issued.status_code == 200, issued.text
    assert issued.json()["scope"] == "meetings:write"
    found = connection(sync_redis, app.workspace, host["id"])
    assert found is not None and found[:2] == ["foyer", host["id"]]

    reused = app.exchange(back["code"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert page_errors == []


def test_a_host_denies(
    context: BrowserContext,
    app: App,
    receiver: Receiver,
    host: dict[str, Any],
    sync_redis: redis.Redis,
) -> None:
    page = _consent(context, app)
    page.click("#deny")
    back = _back_at_the_app(page, receiver)
    assert back["error"] == "access_denied" and back["state"] == app.state
    assert "code" not in back
    assert connection(sync_redis, app.workspace, host["id"]) is None


def test_a_wrong_token_is_asked_again(
    context: BrowserContext, app: App, receiver: Receiver, host: dict[str, Any]
) -> None:
    page = _consent(context, app)
    page.fill("#token", "not-a-token")
    page.click("#allow")
    expect(page.locator("#problem")).to_contain_text("not a valid host token")
    assert receiver.hits == []
    page.fill("#token", host["token"])
    page.click("#allow")
    assert _back_at_the_app(page, receiver)["code"]


def test_an_unregistered_redirect_uri_shows_an_error_page(
    context: BrowserContext, app: App, receiver: Receiver
) -> None:
    page = context.new_page()
    evil = receiver.url.replace("/callback", "/evil")
    page.goto(app.authorize_url(redirect_uri=evil))
    expect(page.locator("#heading")).to_have_text("Cannot connect")
    expect(page.locator("#app")).to_have_attribute("data-state", "refused")
    expect(page.locator("#lead")).to_contain_text("an address it never registered")
    screenshot(page, "oauth-refused")
    assert receiver.hits == [] and page.url.startswith(app.foyer.http_url)


def test_revoking_the_token_disconnects(
    context: BrowserContext,
    app: App,
    receiver: Receiver,
    host: dict[str, Any],
    sync_redis: redis.Redis,
) -> None:
    page = _consent(context, app)
    page.fill("#token", host["token"])
    page.click("#allow")
    token = app.exchange(_back_at_the_app(page, receiver)["code"]).json()
    assert connection(sync_redis, app.workspace, host["id"]) is not None
    revoked = httpx.post(
        f"{app.foyer.http_url}/oauth/revoke",
        data={"token": token["access_token"], "token_type_hint": "access_token"},
        auth=(app.client_id, app.client_secret),
    )
    assert revoked.status_code == 200
    assert connection(sync_redis, app.workspace, host["id"]) is None
    refresh = app.post(
        "/oauth/token", {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    )
    assert refresh.json()["error"] == "invalid_grant"
