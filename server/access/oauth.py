"""Foyer as an OAuth 2.0 authorization server (RFC 6749, PKCE RFC 7636 with
S256 only, revocation RFC 7009): a workspace app asks a host for permission to
create meeting links (scope ``meetings:write``); the host signs in with its
host token on Foyer's consent page and approves; the app exchanges the code
for a bearer token, and the host's connection in the app's workspace is made.

oauthlib's framework-agnostic endpoints decide every rule of the protocol
(parameters, client authentication, PKCE, error codes). They are synchronous,
and Redis is asynchronous here, so oauthlib runs as a pure core, the way the
lobby's rules do: ``AuthorizationServer`` fetches what a request can need
first (``Facts``: the client, the code, the token), runs oauthlib with a
``Validator`` that reads only those and writes down what it decided
(``Effects``), then stores the effects. The one race that matters, a code
exchanged twice at once, is settled by an atomic ``SET NX`` before any token
is stored: exactly one exchange wins, the other gets ``invalid_grant`` and the
tokens of the first are revoked (RFC 6749 section 4.1.2).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import jwt
from oauthlib.common import add_params_to_uri
from oauthlib.oauth2 import (
    AuthorizationCodeGrant,
    AuthorizationEndpoint,
    BearerToken,
    FatalClientError,
    OAuth2Error,
    RefreshTokenGrant,
    RequestValidator,
    RevocationEndpoint,
    TokenEndpoint,
)
from oauthlib.oauth2.rfc6749.errors import (
    InvalidClientIdError,
    InvalidGrantError,
    InvalidRedirectURIError,
    MismatchingRedirectURIError,
    MissingClientIdError,
    MissingRedirectURIError,
)
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256

from protocol.errors import OAuthRefused
from server.storage.oauth import (
    CodeGrant,
    OAuthClient,
    OAuthStore,
    Redeemed,
    TokenGrant,
    digest,
)
from server.storage.values import now_ms

log = logging.getLogger("foyer.oauth")

SCOPE = "meetings:write"
SCOPES = frozenset({SCOPE})
PROVIDER = "foyer"  # the provider of a connection made by an OAuth grant
CODE_TTL_S = 60
ACCESS_TTL_S = 3600
REFRESH_TTL_S = 30 * 24 * 3600
CONSENT_TTL_S = 10 * 60  # how long a consent page may stay open before its form is refused
MAX_REDIRECT_URIS = 10
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
NETLOC = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
JSON_HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


class Provided(Protocol):
    @property
    def provider(self) -> str: ...

    @property
    def connected_ms(self) -> int: ...


class Connector(Protocol):
    """The connections of ``server.meetings.connections`` (wired by the Node):
    access may not import meetings, so it names what it calls."""

    async def connect(self, workspace: str, user: str, provider: str, account: str) -> Provided: ...

    async def get(self, workspace: str, user: str) -> Provided | None: ...

    async def disconnect(self, workspace: str, user: str) -> bool: ...


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be registered, or None. Absolute, no fragment (RFC
    6749 section 3.1.2), https, or http on a loopback address (RFC 8252)."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute http(s) URL"
    if parts.fragment or "#" in uri:
        return "must not have a fragment"
    if not NETLOC.fullmatch(parts.netloc):  # no user info; it goes into a CSP header as is
        return "must name a plain host (and port)"
    if parts.scheme == "http" and host not in LOOPBACK:
        return "must use https (http only on a loopback address)"
    if any(ord(c) <= 32 or c in "\"'<>\\`" for c in uri):
        return "holds a character a URL may not"
    return None


def client_credentials(
    headers: Mapping[str, str], form: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The client's id and secret: HTTP Basic (form-encoded parts, RFC 6749
    section 2.3.1) if the request has it, else the body."""
    header = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            return None, None
        return unquote_plus(client_id), unquote_plus(secret)
    return form.get("client_id"), form.get("client_secret")


def _refusal(exc: Exception) -> OAuthRefused:
    """A request that may not go back to the client, told to the host plainly."""
    if isinstance(exc, MissingClientIdError | InvalidClientIdError):
        return OAuthRefused("the app is not registered with this Foyer")
    if isinstance(exc, MissingRedirectURIError | InvalidRedirectURIError):
        return OAuthRefused("the app did not say where to send you back")
    if isinstance(exc, MismatchingRedirectURIError):
        return OAuthRefused("the app asked to send you back to an address it never registered")
    return OAuthRefused("the request is malformed (a parameter is repeated or unreadable)")


def _form(body: str) -> dict[str, str]:
    return dict(parse_qsl(body, keep_blank_values=True))


# ------------------------------------------------------------- the pure core


@dataclass(slots=True)
class Facts:
    """What oauthlib may read, fetched before it runs."""

    client: OAuthClient | None = None
    code: CodeGrant | None = None
    code_used: Redeemed | None = None
    token: TokenGrant | None = None  # the refresh token presented, or the token to revoke


@dataclass(slots=True)
class Effects:
    """What oauthlib decided, stored after it returns."""

    code: tuple[str, CodeGrant] | None = None  # a new authorization code
    redeem: str | None = None  # the code exchanged for the tokens below
    refresh: str | None = None  # the refresh token rotated for the tokens below
    token: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    scope: str = SCOPE
    reused: Redeemed | None = None  # a code used twice: revoke its grant
    revoke: str | None = None  # RFC 7009


class Validator(RequestValidator):  # type: ignore[misc]
    """oauthlib's questions, answered from ``Facts``; its decisions written to
    ``Effects``. Confidential clients only (``client_authentication_required``),
    PKCE always, one scope, exact redirect URIs."""

    def __init__(self, facts: Facts, effects: Effects) -> None:
        super().__init__()
        self.facts = facts
        self.effects = effects

    def _client(self, client_id: object) -> OAuthClient | None:
        found = self.facts.client
        if found is None or not isinstance(client_id, str):
            return None
        return found if hmac.compare_digest(found.client_id, client_id) else None

    # -- client authentication

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        """Confidential clients authenticate; a public one names itself
        (``client_id`` in the body, no credentials): PKCE is its proof."""
        client_id, secret = client_credentials(request.headers, _form(request.body or ""))
        found = self._client(client_id)
        return not (found is not None and found.public and secret is None)

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        client_id, secret = client_credentials(request.headers, _form(request.body or ""))
        found = self._client(client_id)
        if found is None or found.public or not secret:
            return False
        if not hmac.compare_digest(digest(secret), found.secret_hash):
            return False
        request.client = found
        request.client_id = found.client_id
        return True

    def authenticate_client_id(self, client_id: str, request: Any, *args: Any, **kw: Any) -> bool:
        found = self._client(client_id)
        if found is None or not found.public:
            return False
        request.client = found
        return True

    # -- the authorization request

    def validate_client_id(self, client_id: str, request: Any, *args: Any, **kw: Any) -> bool:
        return self._client(client_id) is not None

    def validate_redirect_uri(
        self, client_id: str, redirect_uri: str, request: Any, *args: Any, **kw: Any
    ) -> bool:
        found = self._client(client_id)
        return found is not None and redirect_uri in found.redirect_uris

    def get_default_redirect_uri(
        self, client_id: str, request: Any, *args: Any, **kw: Any
    ) -> str | None:
        found = self._client(client_id)
        # With several registered, the request must say which (RFC 6749 section 3.1.2.3).
        return found.redirect_uris[0] if found and len(found.redirect_uris) == 1 else None

    def validate_response_type(
        self, client_id: str, response_type: str, client: Any, request: Any, *a: Any, **kw: Any
    ) -> bool:
        return response_type == "code"

    def is_pkce_required(self, client_id: str, request: Any) -> bool:
        return True

    def get_default_scopes(self, client_id: str, request: Any, *args: Any, **kw: Any) -> list[str]:
        return [SCOPE]

    def validate_scopes(
        self, client_id: str, scopes: list[str], client: Any, request: Any, *a: Any, **kw: Any
    ) -> bool:
        return bool(scopes) and set(scopes) <= SCOPES

    def save_authorization_code(
        self, client_id: str, code: dict[str, Any], request: Any, *args: Any, **kw: Any
    ) -> None:
        self.effects.code = (
            str(code["code"]),
            CodeGrant(
                client_id=client_id,
                host=str(request.user),
                redirect_uri=str(request.redirect_uri),
                scope=" ".join(request.scopes or [SCOPE]),
                challenge=str(request.code_challenge),
                method=str(request.code_challenge_method),
                expires_ms=now_ms() + CODE_TTL_S * 1000,
            ),
        )

    # -- the token request

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Any, request: Any, *a: Any, **kw: Any
    ) -> bool:
        return grant_type in ("authorization_code", "refresh_token")

    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kw: Any
    ) -> bool:
        used = self.facts.code_used
        if used is not None:
            if used.client_id == client_id:  # only its own client can end the grant
                self.effects.reused = used
            return False
        grant = self.facts.code
        if grant is None or grant.client_id != client_id or grant.expires_ms <= now_ms():
            return False
        request.user = grant.host
        request.scopes = grant.scope.split()
        request.code_challenge = grant.challenge
        request.code_challenge_method = grant.method
        return True

    def get_code_challenge(self, code: str, request: Any) -> str | None:
        return self.facts.code.challenge if self.facts.code else None

    def get_code_challenge_method(self, code: str, request: Any) -> str | None:
        return self.facts.code.method if self.facts.code else None

    def confirm_redirect_uri(
        self, client_id: str, code: str, redirect_uri: str, client: Any, *a: Any, **kw: Any
    ) -> bool:
        grant = self.facts.code
        return grant is not None and redirect_uri == grant.redirect_uri

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Any, *args: Any, **kw: Any
    ) -> None:
        self.effects.redeem = code

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: Any, *args: Any, **kw: Any
    ) -> bool:
        found = self.facts.token
        if found is None or found.kind != "refresh" or found.client_id != client.client_id:
            return False
        request.user = found.host
        return True

    def get_original_scopes(
        self, refresh_token: str, request: Any, *a: Any, **kw: Any
    ) -> list[str]:
        return self.facts.token.scope.split() if self.facts.token else []

    def rotate_refresh_token(self, request: Any) -> bool:
        return True

    def save_bearer_token(self, token: dict[str, Any], request: Any, *a: Any, **kw: Any) -> None:
        self.effects.token = dict(token)
        self.effects.host = str(request.user)
        self.effects.scope = " ".join(request.scopes or [SCOPE])
        if request.grant_type == "refresh_token":
            self.effects.refresh = str(request.refresh_token)

    # -- revocation

    def revoke_token(
        self, token: str, token_type_hint: str | None, request: Any, *a: Any, **kw: Any
    ) -> None:
        found = self.facts.token
        # A token another client holds is left alone (and nobody learns it exists).
        if found is not None and found.client_id == request.client.client_id:
            self.effects.revoke = token


class S256CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    """The authorization-code grant with PKCE's S256 only: ``plain`` (and a
    request naming no method, which RFC 7636 reads as ``plain``) is refused."""

    _code_challenge_methods = {"S256": code_challenge_method_s256}

    def validate_token_request(self, request: Any) -> None:
        """A redirect URI other than the authorization request's is
        ``invalid_grant`` (RFC 6749 section 5.2), not oauthlib's
        ``invalid_request``."""
        try:
            super().validate_token_request(request)
        except MismatchingRedirectURIError:
            raise InvalidGrantError(
                description="the redirect_uri is not the authorization request's",
                request=request,
            ) from None


def _new_token(request: Any = None) -> str:
    return secrets.token_urlsafe(32)


class OAuthCore(AuthorizationEndpoint, TokenEndpoint, RevocationEndpoint):  # type: ignore[misc]
    """oauthlib's endpoints over one request's ``Validator``."""

    def __init__(self, validator: Validator) -> None:
        code = S256CodeGrant(validator)
        refresh = RefreshTokenGrant(validator)
        bearer = BearerToken(validator, _new_token, ACCESS_TTL_S, _new_token)
        AuthorizationEndpoint.__init__(
            self,
            default_response_type="code",
            response_types={"code": code},
            default_token_type=bearer,
        )
        TokenEndpoint.__init__(
            self,
            default_grant_type="authorization_code",
            grant_types={"authorization_code": code, "refresh_token": refresh},
            default_token_type=bearer,
        )
        RevocationEndpoint.__init__(self, validator)


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer of the token or revocation endpoint (RFC 6749 5.1, 5.2)."""

    status: int
    headers: dict[str, str]
    body: str


@dataclass(frozen=True, slots=True)
class Consent:
    """What the consent page shows, and the signed form that carries the
    request to the POST (``csrf``: the value of the form's cookie)."""

    client: OAuthClient
    redirect_uri: str
    form: str
    csrf: str


def _error(description: str, status: int = 400, error: str = "invalid_request") -> Answer:
    body = json.dumps({"error": error, "error_description": description})
    return Answer(status, dict(JSON_HEADERS), body)


# ------------------------------------------------------------- the driver


class AuthorizationServer:
    """The async shell around the core: fetch, run oauthlib, store."""

    def __init__(self, store: OAuthStore, connections: Connector, secret: str) -> None:
        self.store = store
        self.connections = connections
        self._secret = secret

    # -- clients (the integrator's API)

    async def register(
        self, workspace: str, name: str, redirect_uris: list[str], *, public: bool = False
    ) -> tuple[OAuthClient, str | None]:
        """A new client, and its secret (shown this once; None for a public one)."""
        secret = None if public else secrets.token_urlsafe(32)
        client = OAuthClient(
            client_id="fc_" + secrets.token_urlsafe(18),
            workspace=workspace,
            name=name,
            redirect_uris=tuple(redirect_uris),
            secret_hash=digest(secret) if secret else "",
            created_ms=now_ms(),
        )
        await self.store.save_client(client)
        return client, secret

    # -- the authorization endpoint

    async def _facts_for(self, query: str) -> Facts:
        client_id = dict(parse_qsl(query)).get("client_id", "")
        ok = 0 < len(client_id) <= 100 and client_id.isascii()
        return Facts(client=await self.store.client(client_id) if ok else None)

    @staticmethod
    def _validate(core: OAuthCore, uri: str) -> tuple[list[str], dict[str, Any]] | str:
        """oauthlib's checks of an authorization request: its scopes and
        details, or the client's redirect URI with the error. Raises
        ``OAuthRefused`` when the client or redirect URI is wrong."""
        try:
            scopes, info = core.validate_authorization_request(uri)
        except FatalClientError as exc:
            raise _refusal(exc) from None
        except OAuth2Error as exc:
            return str(exc.in_uri(exc.redirect_uri))
        except ValueError:
            raise OAuthRefused("the request could not be read") from None
        return list(scopes), dict(info)

    async def consent(self, uri: str) -> Consent | str:
        """``GET /oauth/authorize``: the page to show, or where to send the
        browser back with an error. A GET never grants anything."""
        query = urlsplit(uri).query
        facts = await self._facts_for(query)
        found = self._validate(OAuthCore(Validator(facts, Effects())), uri)
        if isinstance(found, str):
            return found
        assert facts.client is not None
        nonce = secrets.token_urlsafe(24)
        form = jwt.encode(
            {
                "kind": "oauth-consent",
                "q": query,
                "csrf": digest(nonce),
                "exp": int(time.time()) + CONSENT_TTL_S,
            },
            self._secret,
            algorithm="HS256",
        )
        return Consent(facts.client, str(found[1]["redirect_uri"]), form, nonce)

    def opened(self, form: str, csrf: str) -> str:
        """The authorization request a consent form carries, if the form is
        ours, recent, and was posted with its own cookie (CSRF)."""
        try:
            claims = jwt.decode(
                form, self._secret, algorithms=["HS256"], options={"require": ["exp", "q"]}
            )
        except jwt.PyJWTError:
            raise OAuthRefused("this consent form has expired: start again from the app") from None
        if claims.get("kind") != "oauth-consent" or not isinstance(claims.get("q"), str):
            raise OAuthRefused("this is not a consent form")
        if not csrf or not hmac.compare_digest(digest(csrf), str(claims.get("csrf", ""))):
            raise OAuthRefused("this consent form was not opened in this browser: start again")
        return str(claims["q"])

    async def approve(self, uri: str, host: str) -> str:
        """The host said yes: a code, and where to send the browser with it."""
        facts, effects = await self._facts_for(urlsplit(uri).query), Effects()
        core = OAuthCore(Validator(facts, effects))
        try:
            headers, _body, _status = core.create_authorization_response(
                uri, scopes=[SCOPE], credentials={"user": host}
            )
        except FatalClientError as exc:
            raise _refusal(exc) from None
        except ValueError:
            raise OAuthRefused("the request could not be read") from None
        if effects.code is not None:
            await self.store.save_code(*effects.code)
        return str(headers["Location"])

    async def deny(self, uri: str) -> str:
        """The host said no: ``access_denied`` to the (registered) redirect URI."""
        facts = await self._facts_for(urlsplit(uri).query)
        found = self._validate(OAuthCore(Validator(facts, Effects())), uri)
        if isinstance(found, str):
            return found
        info = found[1]
        params = [("error", "access_denied"), ("error_description", "The host said no.")]
        if info.get("state"):
            params.append(("state", str(info["state"])))
        return str(add_params_to_uri(str(info["redirect_uri"]), params))

    # -- the token endpoint

    async def token(self, uri: str, body: str, headers: dict[str, str]) -> Answer:
        form = _form(body)
        client_id, _ = client_credentials(headers, form)
        facts = Facts()
        if client_id and len(client_id) <= 100:
            facts.client = await self.store.client(client_id)
        if facts.client is not None:
            if form.get("code"):
                facts.code, used = await self.store.code(form["code"])
                facts.code_used = used
            if form.get("refresh_token"):
                facts.token = await self._connected(await self.store.token(form["refresh_token"]))
        effects = Effects()
        try:
            out_headers, out_body, status = OAuthCore(
                Validator(facts, effects)
            ).create_token_response(uri, "POST", body, headers)
        except ValueError:
            return _error("the request could not be read")
        if effects.reused is not None:
            await self._revoke(effects.reused)
        if status != 200:
            return Answer(int(status), {**JSON_HEADERS, **dict(out_headers)}, str(out_body))
        assert facts.client is not None and effects.host is not None
        client, host = facts.client, effects.host
        if effects.redeem is not None:
            grant = secrets.token_urlsafe(12)
            mark = Redeemed(grant, client.workspace, host, client.client_id)
            first = await self.store.redeem_code(effects.redeem, mark)
            if first is not None:
                # Another exchange of this code won a moment ago: neither keeps tokens.
                await self._revoke(first)
                return _error("the code was already used", error="invalid_grant")
            # A new grant: the host is connected (again), and the tokens are bound
            # to this connection.
            made = await self.connections.connect(client.workspace, host, PROVIDER, host)
            connected_ms = made.connected_ms
        elif effects.refresh is not None and facts.token is not None:
            grant, connected_ms = facts.token.grant, facts.token.connected_ms
            if not await self.store.spend(effects.refresh):
                return _error("the refresh token was already used", error="invalid_grant")
        else:
            return _error("unsupported grant", error="unsupported_grant_type")
        issued = {effects.token["access_token"]: ("access", ACCESS_TTL_S)}
        if effects.token.get("refresh_token"):
            issued[effects.token["refresh_token"]] = ("refresh", REFRESH_TTL_S)
        now = now_ms()
        await self.store.issue(
            {
                value: TokenGrant(
                    kind,
                    client.client_id,
                    client.workspace,
                    host,
                    effects.scope,
                    grant,
                    now + ttl * 1000,
                    connected_ms,
                )
                for value, (kind, ttl) in issued.items()
            }
        )
        return Answer(200, {**JSON_HEADERS, **dict(out_headers)}, str(out_body))

    async def _connected(self, found: TokenGrant | None) -> TokenGrant | None:
        """``found`` if the connection its grant made still stands: not
        deleted, nor replaced (by a reconnect or another provider)."""
        if found is None:
            return None
        now = await self.connections.get(found.workspace, found.host)
        if now is None or now.provider != PROVIDER or now.connected_ms != found.connected_ms:
            return None
        return found

    async def _revoke(self, redeemed: Redeemed) -> None:
        """A code used twice: someone else may hold it (RFC 6749 section 4.1.2)."""
        log.warning("an OAuth code was used twice: the grant of %s is revoked", redeemed.client_id)
        await self._revoke_grant(redeemed.grant, redeemed.workspace, redeemed.host)

    async def _revoke_grant(self, grant: str, workspace: str, host: str) -> None:
        if await self.store.revoke_for(workspace, host, grant):
            await self._disconnect(workspace, host)

    async def _disconnect(self, workspace: str, host: str) -> None:
        connection = await self.connections.get(workspace, host)
        if connection is not None and connection.provider == PROVIDER:
            await self.connections.disconnect(workspace, host)

    # -- the revocation endpoint (RFC 7009)

    async def revoke(self, uri: str, body: str, headers: dict[str, str]) -> Answer:
        """Revoking a token revokes its grant (access and refresh tokens) and
        disconnects the host in the client's workspace. An unknown token is
        answered 200 like a known one (RFC 7009 section 2.2)."""
        form = _form(body)
        client_id, _ = client_credentials(headers, form)
        facts = Facts()
        if client_id and len(client_id) <= 100:
            facts.client = await self.store.client(client_id)
        if facts.client is not None and form.get("token"):
            facts.token = await self.store.token(form["token"])
        effects = Effects()
        try:
            out_headers, out_body, status = OAuthCore(
                Validator(facts, effects)
            ).create_revocation_response(uri, "POST", body, headers)
        except ValueError:
            return _error("the request could not be read")
        if status == 200 and effects.revoke is not None and facts.token is not None:
            found = facts.token
            await self._revoke_grant(found.grant, found.workspace, found.host)
        return Answer(int(status), {**JSON_HEADERS, **dict(out_headers)}, str(out_body or ""))

    async def revoke_for(self, workspace: str, host: str) -> bool:
        """Revoke the tokens the host's grant in ``workspace`` holds (the
        connection's ``DELETE`` calls this; the connection itself is the
        caller's to delete). ``False`` if there were none."""
        return await self.store.revoke_for(workspace, host)

    # -- the resource side

    async def access(self, token: str) -> TokenGrant | None:
        """What a bearer access token allows, if it is live, scoped
        ``meetings:write``, its client still registered and the host still
        connected through it (a connection deleted or replaced by any path
        ends its tokens too); else None."""
        if not token or len(token) > 200:
            return None
        found = await self.store.token(token)
        if found is None or found.kind != "access" or SCOPE not in found.scope.split():
            return None
        client, connected = await asyncio.gather(
            self.store.client(found.client_id), self._connected(found)
        )
        return connected if client is not None else None
