"""A real OAuth client for the tests of Foyer's authorization server: a PKCE
pair (S256, RFC 7636 appendix B), a registered workspace app, the consent
form posted as a browser would, and the code exchanged with plain httpx."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import redis

from server.meetings.connections import key as connection_key
from server.storage.values import unpack
from tests.support import FoyerProcess

FORM_FIELD = re.compile(r'name="form" value="([^"]+)"')


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @staticmethod
    def challenge_of(verifier: str) -> str:
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-]
        return cls(verifier, cls.challenge_of(verifier))


@dataclass
class App:
    """A registered workspace app (a confidential client)."""

    foyer: FoyerProcess
    client_id: str
    client_secret: str
    workspace: str
    redirect_uri: str
    pkce: Pkce = field(default_factory=Pkce.new)
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    def authorize_url(self, **overrides: str | None) -> str:
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "meetings:write",
            "state": self.state,
            "code_challenge": self.pkce.challenge,
            "code_challenge_method": "S256",
            **overrides,
        }
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{self.foyer.http_url}/oauth/authorize?{query}"

    def exchange(self, code: str, verifier: str | None = None, **extra: str) -> httpx.Response:
        """``POST /oauth/token`` with HTTP Basic client authentication."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier if verifier is not None else self.pkce.verifier,
            **extra,
        }
        return httpx.post(
            f"{self.foyer.http_url}/oauth/token",
            data=data,
            auth=(self.client_id, self.client_secret),
            timeout=10,
        )

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{self.foyer.http_url}{path}",
            data=data,
            auth=(self.client_id, self.client_secret),
            timeout=10,
        )


def register(
    foyer: FoyerProcess, redirect_uri: str, workspace: str | None = None, name: str = "Acme Rooms"
) -> App:
    workspace = workspace or "ws-" + secrets.token_hex(4)
    with foyer.api() as api:
        created = api.post(
            "/api/oauth/clients",
            json={"workspace": workspace, "name": name, "redirect_uris": [redirect_uri]},
        )
    assert created.status_code == 201, created.text
    body = created.json()
    return App(foyer, body["client_id"], body["client_secret"], workspace, redirect_uri)


def consent_form(page: httpx.Response) -> str:
    found = FORM_FIELD.search(page.text)
    assert found, page.text
    return found.group(1).replace("&amp;", "&")


def decide(
    foyer: FoyerProcess, url: str, decision: str, host_token: str
) -> tuple[httpx.Response, httpx.Response]:
    """Open the consent page and post the decision as a browser would (with
    the page's cookie): the page, and the answer (not followed)."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        answer = browser.post(
            f"{foyer.http_url}/oauth/authorize",
            data={"form": consent_form(page), "token": host_token, "decision": decision},
        )
    return page, answer


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def code_for(app: App, host_token: str) -> str:
    """The whole consent, approved: the code the redirect carries."""
    _, answer = decide(app.foyer, app.authorize_url(), "allow", host_token)
    assert answer.status_code == 303, answer.text
    params = query_of(answer.headers["location"])
    assert params["state"] == app.state
    return params["code"]


def connection(client: redis.Redis, workspace: str, host: str) -> list[Any] | None:
    """The stored connection (provider, account, connected_ms), read from Redis."""
    raw = client.get(connection_key(workspace, host))
    return None if raw is None else list(unpack(raw))  # type: ignore[arg-type]


class Receiver:
    """The app's redirect URI: a tiny HTTP server on 127.0.0.1 that records
    each request's query and answers a page that says so."""

    def __init__(self) -> None:
        receiver = self
        self.hits: list[dict[str, str]] = []
        self.arrived = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                receiver.hits.append(query)
                data = b"<!doctype html><title>Back in the app</title><h1 id='back'>Back</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                receiver.arrived.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
