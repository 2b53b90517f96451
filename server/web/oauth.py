"""OAuth 2.0 over HTTP (docs/meetings.md, Connecting an account): the
integrator's client registry (``/api/oauth/clients``, API key), the consent
page (``/oauth/authorize``), the token and revocation endpoints, the RFC 8414
metadata, and ``bearer_host`` for the APIs an access token opens.

The consent page follows the email replies' rule: a GET only shows what would
happen; the host's POST decides. The POST carries the host's token in its
body (never in a URL) and the authorization request in a signed form field
bound to a ``SameSite=Strict`` cookie set by the GET (CSRF: a form posted from
another site, or one opened in another browser, is refused)."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from protocol.errors import (
    ApiUnauthorized,
    BadRequest,
    InvalidBody,
    OAuthRefused,
    Unauthorized,
    UnknownClient,
)
from protocol.messages import HOST_ID_RE
from server.access.oauth import (
    CONSENT_TTL_S,
    MAX_REDIRECT_URIS,
    SCOPE,
    AuthorizationServer,
    Consent,
    redirect_uri_problem,
)
from server.access.tokens import same_secret
from server.hosts.settings import validation_message
from server.storage.oauth import OAuthClient, TokenGrant
from server.web.context import WebContext, web
from server.web.pages import page_headers, template

COOKIE = "foyer_oauth_consent"
MAX_FORM = 16 * 1024  # bytes of a posted form or token request
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class OAuthClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace: str = Field(
        pattern=HOST_ID_RE.pattern, description="the integrator's workspace (as in its API paths)"
    )
    name: str = Field(
        min_length=1, max_length=100, pattern=PRINTABLE, description="shown on the consent page"
    )
    redirect_uris: list[str] = Field(
        min_length=1,
        max_length=MAX_REDIRECT_URIS,
        description="exact URIs; https, or http on a loopback address",
    )
    public: bool = Field(
        default=False, description="a public client (no secret; PKCE is its only proof)"
    )


def _server(request: Request) -> AuthorizationServer:
    server = web(request).oauth
    assert server is not None, "the Node wires the authorization server"
    return server


def _api_key(request: Request) -> None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not same_secret(key.strip(), web(request).api_key):
        raise ApiUnauthorized("missing or wrong API key (Authorization: Bearer)")


def _base_url(request: Request) -> str:
    return (web(request).public_url or str(request.base_url)).rstrip("/")


def _client_view(client: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "workspace": client.workspace,
        "name": client.name,
        "redirect_uris": list(client.redirect_uris),
        "public": client.public,
        "created_at": client.created_ms,
    }


# ----------------------------------------------------------- client registry


async def create_client(request: Request) -> Response:
    """``POST /api/oauth/clients``: a workspace app; its secret is shown once."""
    _api_key(request)
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON") from None
    try:
        body = OAuthClientCreate.model_validate(data)
    except ValidationError as exc:
        raise InvalidBody(validation_message(exc)) from None
    if not body.name.strip():
        raise InvalidBody("name: must not be blank")
    for index, uri in enumerate(body.redirect_uris):
        problem = redirect_uri_problem(uri)
        if problem is not None:
            raise InvalidBody(f"redirect_uris[{index}]: {problem}")
    client, secret = await _server(request).register(
        body.workspace, body.name.strip(), list(dict.fromkeys(body.redirect_uris)),
        public=body.public,
    )  # fmt: skip
    view = _client_view(client)
    if secret is not None:
        view["client_secret"] = secret
    return JSONResponse(view, status_code=201)


async def _require_client(request: Request) -> OAuthClient:
    client_id = str(request.path_params["client_id"])
    found = await _server(request).store.client(client_id) if len(client_id) <= 100 else None
    if found is None:
        raise UnknownClient("no such client")
    return found


async def get_client(request: Request) -> Response:
    _api_key(request)
    return JSONResponse(_client_view(await _require_client(request)))


async def delete_client(request: Request) -> Response:
    """Its tokens stop working at once; connections it made stay until
    disconnected."""
    _api_key(request)
    client = await _require_client(request)
    await _server(request).store.delete_client(client.client_id)
    return Response(status_code=204)


# ------------------------------------------------------------- consent page


def _page(title: str, lead: str, *, state: str, form: str = "", status: int = 200) -> HTMLResponse:
    body = (
        template("reply.html")
        .replace("{title}", html.escape(title))
        .replace("{lead}", lead)
        .replace("{state}", html.escape(state))
        .replace("{form}", form)
    )
    return HTMLResponse(body, status_code=status, headers=page_headers(frameable=False))


def _refused(exc: OAuthRefused) -> HTMLResponse:
    why = html.escape(str(exc).rstrip("."))
    lead = f"This sign-in request cannot go on: {why}. Nothing was shared with the app."
    return _page("Cannot connect", lead, state="refused", status=400)


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _consent_page(
    request: Request, consent: Consent, *, problem: str = "", status: int = 200
) -> Response:
    app = html.escape(consent.client.name)
    workspace = html.escape(consent.client.workspace)
    back = html.escape(_origin(consent.redirect_uri))
    alert = f'<p class="field-error" id="problem" role="alert">{html.escape(problem)}</p>'
    form = (
        '<form method="post" action="/oauth/authorize" id="consent">'
        f'<input type="hidden" name="form" value="{html.escape(consent.form, quote=True)}">'
        '<div class="field"><label for="token">Your host token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" spellcheck="false">'
        f"{alert if problem else ''}"
        '<p class="hint">The token your Foyer console signs in with. '
        "It stays here: the app never sees it.</p></div>"
        '<div class="field"><button id="allow" type="submit" name="decision" value="allow" '
        'class="primary">Allow</button></div>'
        '<button id="deny" type="submit" name="decision" value="deny">Deny</button>'
        "</form>"
    )
    lead = (
        f"<b>{app}</b> (workspace {workspace}) asks to create meeting links for you "
        f"(<code>{SCOPE}</code>). You will then go back to {back}."
    )
    response = _page(
        f"Allow {consent.client.name} to create meeting links for you?",
        lead,
        state="ask",
        form=form,
        status=status,
    )
    # A form whose answer redirects elsewhere needs that origin in form-action:
    # browsers check the redirect after a POST against it.
    csp = response.headers["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {_origin(consent.redirect_uri)}"
    )
    response.headers["Content-Security-Policy"] = csp
    response.set_cookie(
        COOKIE,
        consent.csrf,
        max_age=CONSENT_TTL_S,
        path="/oauth/authorize",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


def _redirect(request: Request, location: str) -> Response:
    """Back to the client's (registered) redirect URI, with ``iss`` (RFC 9207:
    the client can tell which server answered)."""
    parts = urlsplit(location)
    issuer = urlencode({"iss": _base_url(request)})
    query = f"{parts.query}&{issuer}" if parts.query else issuer
    response = RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.delete_cookie(COOKIE, path="/oauth/authorize")
    return response


async def authorize_page(request: Request) -> Response:
    """``GET /oauth/authorize``: the consent page (never grants anything)."""
    try:
        found = await _server(request).consent(str(request.url))
    except OAuthRefused as exc:
        return _refused(exc)
    if isinstance(found, str):  # an error the client hears about at its redirect URI
        return _redirect(request, found)
    return _consent_page(request, found)


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise OAuthRefused("the form is too large")
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise OAuthRefused("the form could not be read") from None


async def _signed_in(context: WebContext, token: str) -> str | None:
    """The host the pasted token signs in, if it is valid and the host exists."""
    try:
        claims = context.tokens.host(token.strip()) if token.strip() else None
    except Unauthorized:
        return None
    if claims is None or await context.hosts.get_host(claims.host) is None:
        return None
    return claims.host


async def authorize_decide(request: Request) -> Response:
    """``POST /oauth/authorize``: the host's Allow or Deny."""
    server = _server(request)
    try:
        form = await _form(request)
        query = server.opened(form.get("form", ""), request.cookies.get(COOKIE, ""))
        uri = f"{_base_url(request)}/oauth/authorize?{query}"
        decision = form.get("decision")
        if decision == "deny":
            return _redirect(request, await server.deny(uri))
        if decision != "allow":
            raise OAuthRefused("the form has no decision")
        host = await _signed_in(web(request), form.get("token", ""))
        if host is None:
            found = await server.consent(uri)
            if isinstance(found, str):
                return _redirect(request, found)
            problem = "That is not a valid host token. Copy it again from your console."
            return _consent_page(request, found, problem=problem, status=401)
        return _redirect(request, await server.approve(uri, host))
    except OAuthRefused as exc:
        return _refused(exc)


# ------------------------------------------------- token, revocation, metadata


def _answer(status: int, headers: dict[str, str], body: str) -> Response:
    return Response(body, status_code=status, headers=headers)


async def _token_request(request: Request) -> tuple[str, dict[str, str]] | Response:
    raw = await request.body()
    bad = None
    if len(raw) > MAX_FORM:
        bad = "the request is too large"
    else:
        try:
            return raw.decode(), dict(request.headers)
        except UnicodeDecodeError:
            bad = "the request could not be read"
    body = json.dumps({"error": "invalid_request", "error_description": bad})
    return Response(body, status_code=400, media_type="application/json")


async def token(request: Request) -> Response:
    """``POST /oauth/token`` (RFC 6749 section 4.1.3, 6; RFC 7636)."""
    found = await _token_request(request)
    if isinstance(found, Response):
        return found
    answer = await _server(request).token(str(request.url), *found)
    return _answer(answer.status, answer.headers, answer.body)


async def revoke(request: Request) -> Response:
    """``POST /oauth/revoke`` (RFC 7009): the grant goes, and the connection."""
    found = await _token_request(request)
    if isinstance(found, Response):
        return found
    answer = await _server(request).revoke(str(request.url), *found)
    return _answer(answer.status, answer.headers, answer.body)


async def metadata(request: Request) -> Response:
    """``GET /.well-known/oauth-authorization-server`` (RFC 8414)."""
    base = _base_url(request)
    auth_methods = ["client_secret_basic", "client_secret_post", "none"]
    return JSONResponse(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "scopes_supported": [SCOPE],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
        },
        headers={"Access-Control-Allow-Origin": "*"},
    )


# ------------------------------------------------------ for the resource APIs


async def bearer_grant(request: Request) -> TokenGrant | None:
    """What the request's ``Authorization: Bearer`` OAuth access token allows
    (live, scoped ``meetings:write``, its client registered), or None."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return await _server(request).access(value.strip())


async def bearer_host(request: Request) -> str | None:
    """The host an OAuth access token with ``meetings:write`` acts for, or None
    (``POST /api/meetings`` accepts it besides the API key)."""
    found = await bearer_grant(request)
    return found.host if found is not None else None


routes: list[BaseRoute] = [
    Route("/api/oauth/clients", create_client, methods=["POST"]),
    Route("/api/oauth/clients/{client_id}", get_client, methods=["GET"]),
    Route("/api/oauth/clients/{client_id}", delete_client, methods=["DELETE"]),
    Route("/oauth/authorize", authorize_page, methods=["GET", "HEAD"], name="oauth_consent"),
    Route("/oauth/authorize", authorize_decide, methods=["POST"], name="oauth_decide"),
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/revoke", revoke, methods=["POST"]),
    Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
]
