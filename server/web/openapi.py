"""The OpenAPI 3 document of the HTTP API, built from the same pydantic
models that validate the bodies, and a plain page to read it."""

from __future__ import annotations

import html
from functools import cache
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from protocol.lobby import PAGE_GUESTS
from protocol.messages import HOST_ID_RE
from server.hosts.settings import SettingsPatch
from server.i18n import LANGUAGES
from server.web.api import (
    GuestReply,
    GuestTokenRequest,
    HostCreate,
    SessionCreate,
    SlugChange,
    TokenRequest,
)
from server.web.calendars_api import CalendarPut
from server.web.meetings_api import BookingCreate, BookingPatch, ConnectionPut, MeetingCreate
from server.web.oauth import OAuthClientCreate
from server.web.webhooks_api import SecretRotation, WebhookCreate

BODIES: dict[str, type[BaseModel]] = {
    "HostCreate": HostCreate,
    "SlugChange": SlugChange,
    "SettingsPatch": SettingsPatch,
    "SessionCreate": SessionCreate,
    "TokenRequest": TokenRequest,
    "GuestTokenRequest": GuestTokenRequest,
    "GuestReply": GuestReply,
    "WebhookCreate": WebhookCreate,
    "SecretRotation": SecretRotation,
    "CalendarPut": CalendarPut,
    "OAuthClientCreate": OAuthClientCreate,
    "MeetingCreate": MeetingCreate,
    "ConnectionPut": ConnectionPut,
    "BookingCreate": BookingCreate,
    "BookingPatch": BookingPatch,
}

ERROR = {"$ref": "#/components/schemas/Error"}
GUEST = {"name": "guest", "in": "path", "required": True, "schema": {"type": "string"}}
AFTER = {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}}
LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_GUESTS},
}
HOST_ID = {
    "name": "host",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": HOST_ID_RE.pattern},
}
SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
SLUG_QUERY = {"name": "slug", "in": "query", "required": True, "schema": {"type": "string"}}
LANG = {"name": "lang", "in": "query", "required": False, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "body is not JSON",
        401: "missing or wrong API key",
        404: "not found",
        409: "conflict (already_resolved: another reply won)",
        410: "retired_link: the host retired this link",
        422: "invalid body (the message says which rule failed)",
        429: "too many requests from this address in this minute",
        502: "provider_failed: the meeting provider failed or did not answer",
        503: "the store does not answer",
    }
    return {str(s): _json(ERROR, text[s]) for s in statuses}


def _op(
    summary: str,
    ok: tuple[int, dict[str, Any], str],
    *,
    body: str | None = None,
    body_required: bool = True,
    errors: tuple[int, ...] = (),
    params: list[Any] | None = None,
    secure: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {str(ok[0]): _json(ok[1], ok[2]), **_errors(*errors)},
    }
    if body:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if params:
        op["parameters"] = params
    if not secure:
        op["security"] = []
    return op


HOST_VIEW = {"$ref": "#/components/schemas/Host"}
CLIENT_ID = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}}
OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
OAUTH_CLIENT = {
    "type": "object",
    "required": ["client_id", "workspace", "name", "redirect_uris", "public", "created_at"],
    "properties": {
        "client_id": {"type": "string"},
        "client_secret": {"type": "string", "description": "only in the answer to POST"},
        "workspace": {"type": "string"},
        "name": {"type": "string"},
        "redirect_uris": {"type": "array", "items": {"type": "string"}},
        "public": {"type": "boolean"},
        "created_at": {"type": "integer"},
    },
}
OAUTH_TOKEN = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": "string"},
        "scope": {"type": "string"},
    },
}
ENDPOINT = {"name": "endpoint", "in": "path", "required": True, "schema": {"type": "string"}}
MESSAGE = {"name": "message", "in": "path", "required": True, "schema": {"type": "string"}}
WEBHOOK_VIEW = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "hosts": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
        "created_at": {"type": "integer"},
        "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
        "deployment": {"type": "boolean"},
        "secrets_signing": {"type": "integer"},
        "secret": {"type": "string", "description": "only when created or rotated"},
    },
}


def _calendar_paths() -> dict[str, Any]:
    """``/api/hosts/{host}/calendars``: CalDAV calendar sync (server/web/calendars_api.py)."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    view = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "url": {"type": "string"},
            "username": {"type": "string"},
            "connected_at": {"type": "integer"},
            "state": {"type": "object"},
        },
    }
    listing = {"type": "object", "properties": {"calendars": {"type": "array", "items": view}}}
    queued = {"type": "object", "properties": {"status": {"type": "string"}}}
    return {
        "/api/hosts/{host}/calendars": {
            "get": _op(
                "The host's connected calendars and their sync state (API key or host token)",
                (200, listing, "the calendars"),
                errors=(401, 404),
                params=[HOST_ID],
            )
        },
        "/api/hosts/{host}/calendars/{name}": {
            "put": _op(
                "Connect a CalDAV calendar (checked at once; 422 calendar_refused, "
                "not_a_calendar; 502 calendar_unreachable)",
                (201, view, "connected (200: reconnected)"),
                body="CalendarPut",
                errors=(400, 401, 404, 422),
                params=[HOST_ID, name],
            ),
            "delete": _op(
                "Disconnect: the credentials and the sync memory are forgotten",
                (204, {"type": "null"}, "disconnected"),
                errors=(401, 404),
                params=[HOST_ID, name],
            ),
        },
        "/api/hosts/{host}/calendars/{name}/sync": {
            "post": _op(
                "Sync it now",
                (202, queued, "its round is due now"),
                errors=(401, 404),
                params=[HOST_ID, name],
            )
        },
    }


def _page_op(summary: str, ok: int, params: list[Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [],
        "responses": {
            str(ok): {"description": "the page or the redirect"},
            "400": {"description": "a page: the client or redirect URI is wrong (no redirect)"},
        },
    }
    if params:
        op["parameters"] = params
    return op


def _form_op(summary: str, fields: dict[str, Any], ok: dict[str, Any]) -> dict[str, Any]:
    """An OAuth endpoint: a form body, client authentication by HTTP Basic or
    the body, RFC 6749 section 5.2 errors."""
    return {
        "summary": summary,
        "security": [{"oauthClient": []}, {}],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": fields}
                }
            },
        },
        "responses": {
            "200": ok,
            "400": _json(OAUTH_ERROR, "RFC 6749 section 5.2 error"),
            "401": _json(OAUTH_ERROR, "invalid_client"),
        },
    }


STRING = {"type": "string"}
AUTHORIZE_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": STRING}
    for name in (
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    )
]


def _webhook_paths() -> dict[str, Any]:
    """``/api/webhooks``: registered endpoints (server/web/webhooks_api.py)."""
    listing = {
        "type": "object",
        "properties": {"webhooks": {"type": "array", "items": WEBHOOK_VIEW}},
    }
    log = {
        "type": "object",
        "properties": {
            "attempts": {"type": "array", "items": {"type": "object"}},
            "dead": {"type": "array", "items": {"type": "object"}},
        },
    }
    queued = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "id": {"type": "string"}},
    }
    return {
        "/api/webhooks": {
            "post": _op(
                "Register a webhook endpoint (its secret is in the answer)",
                (201, WEBHOOK_VIEW, "registered"),
                body="WebhookCreate",
                errors=(400, 401, 422),
            ),
            "get": _op("Every webhook endpoint", (200, listing, "the endpoints"), errors=(401,)),
        },
        "/api/webhooks/{endpoint}": {
            "get": _op(
                "One webhook endpoint",
                (200, WEBHOOK_VIEW, "the endpoint"),
                errors=(401, 404),
                params=[ENDPOINT],
            ),
            "delete": _op(
                "Remove a registered endpoint",
                (204, {"type": "null"}, "removed"),
                errors=(401, 404, 422),
                params=[ENDPOINT],
            ),
        },
        "/api/webhooks/{endpoint}/rotate": {
            "post": _op(
                "A new secret; the old one keeps signing for the overlap",
                (200, WEBHOOK_VIEW, "rotated (the new secret is in the answer)"),
                body="SecretRotation",
                body_required=False,
                errors=(400, 401, 404, 422),
                params=[ENDPOINT],
            )
        },
        "/api/webhooks/{endpoint}/enable": {
            "post": _op(
                "Turn an endpoint on again after it answered 410",
                (200, WEBHOOK_VIEW, "enabled"),
                errors=(401, 404),
                params=[ENDPOINT],
            )
        },
        "/api/webhooks/{endpoint}/deliveries": {
            "get": _op(
                "The endpoint's latest attempts and its dead letters",
                (200, log, "attempts (newest first) and dead letters"),
                errors=(401, 404, 422),
                params=[ENDPOINT, {**LIMIT, "schema": {"type": "integer", "maximum": 500}}],
            )
        },
        "/api/webhooks/{endpoint}/deliveries/{message}/redeliver": {
            "post": _op(
                "Send one logged or dead-lettered event again, with its webhook-id",
                (202, queued, "queued"),
                errors=(401, 404),
                params=[ENDPOINT, MESSAGE],
            )
        },
    }


@cache
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name, model in BODIES.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    schemas["Error"] = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    }
    schemas["Host"] = {
        "type": "object",
        "required": ["id", "name", "slug", "link", "settings"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "email": {"type": ["string", "null"]},
            "slug": {"type": "string"},
            "link": {"type": "string"},
            "retired": {"type": "array", "items": {"type": "string"}},
            "settings": {"type": "object"},
            "email_enabled": {"type": "boolean"},
            "regions": {"type": "array", "items": {"type": "string"}},
        },
    }
    token = {
        "type": "object",
        "required": ["token"],
        "properties": {"token": {"type": "string"}, "expires_at": {"type": "integer"}},
    }
    session = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "link": {"type": "string"},
            "title": {"type": "string"},
            "starts_at": {"type": "integer"},
            "duration": {"type": "integer"},
        },
    }
    link = {
        "type": "object",
        "properties": {
            "slug": {"type": "string"},
            "host_name": {"type": "string"},
            "host_online": {"type": "boolean"},
            "host_state": {
                "type": "string",
                "enum": ["available", "in_meeting", "away"],
                "description": "what the host said it is doing (meaningful while online)",
            },
            "embed_allowed": {
                "type": "boolean",
                "description": "whether the asking page's Origin may open the guest socket",
            },
        },
    }
    slug_check = {
        "type": "object",
        "required": ["slug", "ok", "rules"],
        "properties": {
            "slug": {"type": "string"},
            "ok": {"type": "boolean"},
            "rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"rule": {"type": "string"}, "ok": {"type": "boolean"}},
                },
            },
        },
    }
    catalogue = {
        "type": "object",
        "required": ["lang", "messages"],
        "properties": {
            "lang": {"type": "string", "enum": list(LANGUAGES)},
            "messages": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    lobby_page = {
        "type": "object",
        "required": ["guests", "more"],
        "properties": {
            "guests": {"type": "array", "items": {"type": "object"}},
            "more": {"type": "boolean"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Foyer HTTP API",
            "version": "1",
            "description": "Hosts, personal links, settings, sessions and tokens. "
            "Errors are JSON {code, message}. The real-time part is the "
            "WebSocket protocol in docs/protocol.md.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "FOYER_API_KEY"},
                "oauthClient": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "an OAuth client's id and secret",
                },
            },
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/hosts": {
                "post": _op(
                    "Create a host (slug generated from the name)",
                    (201, HOST_VIEW, "created"),
                    body="HostCreate",
                    errors=(400, 401, 409, 422),
                )
            },
            "/api/hosts/{host}": {
                "get": _op(
                    "A host, with its settings (API key or the host's token)",
                    (200, HOST_VIEW, "the host"),
                    errors=(401, 404),
                    params=[HOST_ID],
                )
            },
            "/api/hosts/{host}/token": {
                "post": _op(
                    "A host JWT for the host's devices",
                    (200, token, "a token"),
                    body="TokenRequest",
                    body_required=False,
                    errors=(400, 401, 404, 422),
                    params=[HOST_ID],
                )
            },
            "/api/hosts/{host}/slug": {
                "put": _op(
                    "Change the personal link's slug: the old one keeps leading to this "
                    "host, or is retired at once (retire_old); API key or the host's token",
                    (200, HOST_VIEW, "changed"),
                    body="SlugChange",
                    errors=(400, 401, 404, 409, 422),
                    params=[HOST_ID],
                )
            },
            "/api/hosts/{host}/slug-check": {
                "get": _op(
                    "Each slug rule, passed or not, and whether another host has the slug "
                    "(API key or the host's token)",
                    (200, slug_check, "the rules"),
                    errors=(401, 404),
                    params=[HOST_ID, SLUG_QUERY],
                )
            },
            "/api/hosts/{host}/settings": {
                "patch": _op(
                    "Partial update of name, email, email mode and language, meeting "
                    "defaults, policy, lobby rules (API key or the host's token); the "
                    "answer shows every setting in effect",
                    (200, HOST_VIEW, "the whole host after the update"),
                    body="SettingsPatch",
                    errors=(400, 401, 404, 422),
                    params=[HOST_ID],
                )
            },
            "/api/hosts/{host}/sessions": {
                "post": _op(
                    "A scheduled session on the personal link",
                    (201, session, "created"),
                    body="SessionCreate",
                    errors=(400, 401, 404, 422),
                    params=[HOST_ID],
                )
            },
            "/api/hosts/{host}/waiting": {
                "get": _op(
                    "The lobby, oldest first, a page at a time (API key or the host's token)",
                    (200, lobby_page, "a page of waiting guests"),
                    errors=(401, 404, 422),
                    params=[HOST_ID, AFTER, LIMIT],
                )
            },
            "/api/hosts/{host}/guests/{guest}/reply": {
                "post": _op(
                    "Answer a waiting guest as a device would; the first reply wins",
                    (200, {"type": "object"}, "applied"),
                    body="GuestReply",
                    errors=(400, 401, 404, 409, 422),
                    params=[HOST_ID, GUEST],
                )
            },
            "/api/guest-tokens": {
                "post": _op(
                    "A guest JWT: a guest who presents it is verified",
                    (201, token, "created"),
                    body="GuestTokenRequest",
                    errors=(400, 401, 422),
                )
            },
            "/api/links/{slug}": {
                "get": _op(
                    "Public: who is behind a personal link",
                    (200, link, "the link"),
                    errors=(404, 410, 429),
                    params=[SLUG],
                    secure=False,
                )
            },
            "/api/oauth/clients": {
                "post": _op(
                    "Register a workspace app as an OAuth client (its secret is shown once)",
                    (201, OAUTH_CLIENT, "created"),
                    body="OAuthClientCreate",
                    errors=(400, 401, 422),
                )
            },
            "/api/oauth/clients/{client_id}": {
                "get": _op(
                    "An OAuth client (without its secret)",
                    (200, OAUTH_CLIENT, "the client"),
                    errors=(401, 404),
                    params=[CLIENT_ID],
                ),
                "delete": {
                    "summary": "Remove an OAuth client: its tokens stop working",
                    "parameters": [CLIENT_ID],
                    "responses": {"204": {"description": "removed"}, **_errors(401, 404)},
                },
            },
            "/oauth/authorize": {
                "get": _page_op(
                    "The consent page (HTML; a GET never grants), or a redirect with an error",
                    200,
                    AUTHORIZE_PARAMS,
                ),
                "post": {
                    **_page_op("The host's decision: 303 to the redirect URI", 303),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "form": STRING,
                                        "token": STRING,
                                        "decision": {"type": "string", "enum": ["allow", "deny"]},
                                    },
                                }
                            }
                        },
                    },
                },
            },
            "/oauth/token": {
                "post": _form_op(
                    "Exchange a code (with its PKCE verifier) or a refresh token for tokens",
                    {
                        "grant_type": {
                            "type": "string",
                            "enum": ["authorization_code", "refresh_token"],
                        },
                        "code": STRING,
                        "redirect_uri": STRING,
                        "code_verifier": STRING,
                        "refresh_token": STRING,
                        "client_id": STRING,
                        "client_secret": STRING,
                    },
                    _json(OAUTH_TOKEN, "the tokens (RFC 6749 section 5.1)"),
                )
            },
            "/oauth/revoke": {
                "post": _form_op(
                    "Revoke a token (RFC 7009): its grant ends and the host is disconnected",
                    {
                        "token": STRING,
                        "token_type_hint": STRING,
                        "client_id": STRING,
                        "client_secret": STRING,
                    },
                    {"description": "revoked, or unknown"},
                )
            },
            "/.well-known/oauth-authorization-server": {
                "get": _op(
                    "OAuth authorization server metadata (RFC 8414)",
                    (200, {"type": "object"}, "the metadata"),
                    secure=False,
                )
            },
            "/api/i18n": {
                "get": _op(
                    "Public: the strings of the visitor's language (lang, else Accept-Language)",
                    (200, catalogue, "the catalogue"),
                    params=[LANG],
                    secure=False,
                )
            },
            "/l/{slug}/qr.svg": {
                "get": {
                    "summary": "Public: the QR code (SVG) of a personal link, with the valid "
                    "link options of the query string",
                    "parameters": [SLUG],
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "the QR code",
                            "content": {"image/svg+xml": {"schema": {"type": "string"}}},
                        },
                        "404": {"description": "unknown link (an HTML page)"},
                        "410": {"description": "retired link (an HTML page)"},
                    },
                }
            },
            "/healthz": {
                "get": _op(
                    "Health: 200 when the store answers",
                    (200, {"type": "object"}, "healthy"),
                    errors=(503,),
                    secure=False,
                )
            },
            **_webhook_paths(),
            **_calendar_paths(),
            **meeting_paths(),
        },
    }


def _path(name: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _ics(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"text/calendar": {"schema": {"type": "string"}}},
    }


MEETING = {
    "type": "object",
    "required": ["id", "host", "title", "url", "join_link", "status"],
    "properties": {
        "id": {"type": "string"},
        "host": {"type": "string"},
        "title": {"type": "string"},
        "starts_at": {"type": ["integer", "null"]},
        "ends_at": {"type": ["integer", "null"]},
        "url": {"type": "string", "description": "the provider's meeting URL"},
        "join_link": {"type": "string", "description": "/m/{id}: through the waiting room"},
        "status": {"type": "string", "enum": ["scheduled", "cancelled"]},
        "booking": {"type": ["string", "null"]},
    },
}
CONNECTION = {
    "type": "object",
    "properties": {
        "workspace": {"type": "string"},
        "user": {"type": "string"},
        "provider": {"type": "string"},
        "account": {"type": "string"},
        "connected_at": {"type": "integer"},
    },
}
BOOKING = {
    "type": "object",
    "required": ["id", "workspace", "host", "status", "join_link"],
    "properties": {
        "id": {"type": "string"},
        "workspace": {"type": "string"},
        "host": {"type": "string"},
        "title": {"type": "string"},
        "starts_at": {"type": "integer"},
        "ends_at": {"type": "integer"},
        "attendees": {"type": "array", "items": {"type": "string"}},
        "location": {"type": "string"},
        "status": {"type": "string", "enum": ["scheduled", "cancelled"]},
        "sequence": {"type": "integer"},
        "meeting_id": {"type": ["string", "null"]},
        "meeting_url": {"type": ["string", "null"]},
        "join_link": {"type": ["string", "null"], "description": "null: no meeting link"},
    },
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "same key + same body: the same booking; another body: 422",
}


def meeting_paths() -> dict[str, Any]:
    """Dedicated meetings, connections, bookings, calendar feeds (docs/meetings.md)."""
    ws = _path("ws", HOST_ID_RE.pattern)
    user = _path("user", HOST_ID_RE.pattern)
    booking = _path("booking")
    conn_path = "/api/workspaces/{ws}/users/{user}/connection"
    booking_path = "/api/workspaces/{ws}/bookings/{booking}"
    show = _op("A booking (Accept: text/calendar: its invitation)", (200, BOOKING, "the booking"),
               errors=(401, 404, 422), params=[ws, booking])  # fmt: skip
    show["responses"]["200"]["content"]["text/calendar"] = {"schema": {"type": "string"}}
    cancel = _op("Cancel the booking and its meeting (its join link says so)",
                 (200, BOOKING, "the cancelled booking"), errors=(401, 404, 422),
                 params=[ws, booking])  # fmt: skip
    feed = _op("A host's calendar feed (bookings and dedicated meetings), by its secret URL",
               (200, {"type": "string"}, "iCalendar"), errors=(404,),
               params=[HOST_ID, {"name": "key", "in": "query", "required": True,
                                 "schema": {"type": "string"}}], secure=False)  # fmt: skip
    feed["responses"]["200"] = _ics("the feed")
    ics = _op("A booking's invitation (METHOD:REQUEST, or CANCEL)",
              (200, {"type": "string"}, "iCalendar"), errors=(401, 404, 422),
              params=[ws, booking])  # fmt: skip
    ics["responses"]["200"] = _ics("the invitation")
    rewrite = _op(
        "Rewrite a calendar: each one-off event with the host's personal link gets a "
        "dedicated meeting link (once per event); API key or the host's token",
        (200, {"type": "object"}, "the JSON event and its outcome, or (text/calendar) the file"),
        errors=(400, 401, 404, 422, 502),
        params=[{"name": "host", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": HOST_ID_RE.pattern}}],
    )  # fmt: skip
    rewrite["responses"]["200"]["content"]["text/calendar"] = {"schema": {"type": "string"}}
    rewrite["requestBody"] = {
        "required": True,
        "content": {
            "text/calendar": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["uid"],
                    "properties": {
                        "host": {"type": "string", "pattern": HOST_ID_RE.pattern},
                        "uid": {"type": "string"},
                        "recurrence_id": {"type": "string"},
                        "title": {"type": "string"},
                        "starts_at": {"type": ["string", "integer"]},
                        "ends_at": {"type": ["string", "integer"]},
                        "location": {"type": "string"},
                        "description": {"type": "string"},
                        "url": {"type": "string"},
                        "recurring": {"type": "boolean"},
                        "rrule": {"type": "string"},
                        "status": {"type": "string"},
                    },
                }
            },
        },
    }
    return {
        "/api/meetings": {
            "post": _op(
                "A dedicated meeting with its own join link (Meet Now: one per call); "
                "API key or the host's token",
                (201, MEETING, "created"),
                body="MeetingCreate",
                errors=(400, 401, 404, 422, 502),
            )
        },
        "/api/meetings/{meeting}": {
            "get": _op(
                "A dedicated meeting (API key or its host's token)",
                (200, MEETING, "the meeting"),
                errors=(401, 404),
                params=[_path("meeting")],
            ),
            "delete": _op(
                "Cancel a dedicated meeting: its join link then says so (a booking's "
                "meeting: 409, cancel the booking)",
                (200, MEETING, "the cancelled meeting"),
                errors=(401, 404, 409),
                params=[_path("meeting")],
            ),
        },
        conn_path: {
            "put": _op(
                "Connect (or reconnect) the user's video account in the workspace",
                (200, CONNECTION, "connected"),
                body="ConnectionPut",
                errors=(400, 401, 404, 422),
                params=[ws, user],
            ),
            "get": _op(
                "The user's connection in the workspace",
                (200, CONNECTION, "connected"),
                errors=(401, 404, 422),
                params=[ws, user],
            ),
            "delete": {
                **_op(
                    "Disconnect: new bookings get no link until a connect",
                    (204, {"type": "object"}, "disconnected"),
                    errors=(401, 422),
                    params=[ws, user],
                ),
                "responses": {"204": {"description": "disconnected"}, **_errors(401, 422)},
            },
        },
        "/api/workspaces/{ws}/bookings": {
            "post": _op(
                "A booking; location video and a connected host: a fresh meeting link",
                (201, BOOKING, "created (200: the same key and body again)"),
                body="BookingCreate",
                errors=(400, 401, 404, 422, 502),
                params=[ws, IDEMPOTENCY_KEY],
            )
        },
        booking_path: {
            "get": show,
            "patch": _op(
                "Reschedule: new times (and title); the meeting link stays",
                (200, BOOKING, "the booking"),
                body="BookingPatch",
                errors=(400, 401, 404, 409, 422),
                params=[ws, booking],
            ),
            "delete": cancel,
        },
        booking_path + "/cancel": {"post": cancel},
        booking_path + ".ics": {"get": ics},
        "/api/hosts/{host}/calendar-feed": {
            "post": _op(
                "A new secret calendar feed URL (the old one then answers 404); "
                "API key or the host's token",
                (201, {"type": "object", "properties": {"url": {"type": "string"}}}, "created"),
                errors=(401, 404),
                params=[HOST_ID],
            )
        },
        "/api/hosts/{host}/calendar.ics": {"get": feed},
        "/api/calendar/rewrite": {"post": rewrite},
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document())


async def api_page(request: Request) -> Response:
    """A readable page of the API, with no scripts or outside assets."""
    doc = document()
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
            fields = ""
            if ref:
                props = doc["components"]["schemas"][ref].get("properties", {})
                fields = ", ".join(html.escape(k) for k in props)
            codes = ", ".join(op["responses"])
            auth = "public" if op.get("security") == [] else "Bearer API key"
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                f"</code></td><td>{html.escape(op['summary'])}</td><td>{fields}</td>"
                f"<td>{codes}</td><td>{auth}</td></tr>"
            )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Foyer HTTP API</title><style>body{{font:15px system-ui,sans-serif;margin:2rem;
max-width:70rem}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;
padding:.4rem;text-align:left;vertical-align:top}}code{{font-size:.9em}}</style></head><body>
<h1>Foyer HTTP API</h1><p>{html.escape(doc["info"]["description"])}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<table><thead><tr><th>method</th><th>path</th><th>what</th><th>body fields</th>
<th>responses</th><th>auth</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
</body></html>"""
    return HTMLResponse(page)


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/api/docs", api_page, methods=["GET"]),
]
