"""The away email's one-click replies: ``GET /reply/{token}`` shows what the
link would do (mail scanners prefetch links: a GET never acts), its button
POSTs, and the reply goes through the same steps as a device's, so the first
reply wins across devices, the API and email. Each link acts once."""

from __future__ import annotations

import html
import logging
import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from protocol import lobby
from protocol.errors import AlreadyResolved, Unauthorized, UnknownGuest
from protocol.messages import Admit, Busy, Message, NewMeeting
from server.access.reply_links import LinkExpired, ReplyClaim
from server.web.context import WebContext, web
from server.web.pages import page_headers, template

log = logging.getLogger("foyer.replies")

DEFAULT_BUSY = "Sorry, I can't meet right now. Please try again later."
VERBS = {"admit": "Admit", "new_meeting": "Start a new meeting with", "busy": "Tell busy:"}
DONE = {"admit": "admitted", "new_meeting": "sent to a new meeting", "busy": "told you are busy"}
OUTCOMES = {
    "admit": "admitted",
    "merge": "added to your meeting",
    "new_meeting": "sent to a new meeting",
    "busy": "told you are busy",
    "deny": "turned away",
}


def _page(title: str, lead: str, *, state: str, form: str = "", status: int = 200) -> Response:
    body = (
        template("reply.html")
        .replace("{title}", html.escape(title))
        .replace("{lead}", lead)
        .replace("{state}", html.escape(state))
        .replace("{form}", form)
    )
    return HTMLResponse(body, status_code=status, headers=page_headers(frameable=False))


def _refused(exc: Unauthorized, context: WebContext) -> Response:
    console = html.escape(f"{context.public_url or ''}/host")
    if isinstance(exc, LinkExpired):
        lead = f'This link has expired. <a href="{console}">Open your console</a> to answer.'
        return _page("Link expired", lead, state="expired", status=410)
    return _page("Unknown link", "This link is not valid.", state="invalid", status=404)


async def _guest(context: WebContext, claim: ReplyClaim) -> tuple[str, str | None, str]:
    """The guest's label, how it was answered if it was, and its state."""
    snapshot = await context.store.snapshot(claim.host, [claim.guest], limit=1)
    known = snapshot.known.get(claim.guest)
    found = await context.store.guest_info(claim.host, claim.guest)
    label = str(found[1].get("label", "The guest")) if found else "The guest"
    if known is None or known.state in lobby.QUEUED:
        return label, None, known.state if known else "gone"
    if known.outcome is not None:
        event = lobby.reply_for_outcome(str(known.outcome.get("type")), known.outcome.get("mode"))
        return label, OUTCOMES.get(event.value, "answered"), known.state
    return label, f"gone ({lobby.reason_for(known.state)})", known.state


async def show(request: Request) -> Response:
    context = web(request)
    token = str(request.path_params["token"])
    try:
        claim = context.reply_links.read(token)
    except Unauthorized as exc:
        return _refused(exc, context)
    label, answered, state = await _guest(context, claim)
    who = html.escape(label)
    if answered is not None:
        return _page("Already answered", f"{who} was already {answered}.", state="answered")
    if state == "gone":
        return _page("Nobody waiting", f"{who} is no longer waiting.", state="gone")
    action = claim.action
    form = (
        f'<form method="post" action="/reply/{html.escape(token)}">'
        f'<button id="confirm" type="submit" class="primary">{VERBS[action]} {who}</button>'
        "</form>"
    )
    return _page(f"{VERBS[action]} {label}?", f"{who} is waiting for you.", state="ask", form=form)


def _reply_for(claim: ReplyClaim, busy_line: str) -> Message:
    if claim.action == "admit":
        return Admit(guest=claim.guest)
    if claim.action == "new_meeting":
        return NewMeeting(guest=claim.guest)
    return Busy(guest=claim.guest, message=busy_line)


async def act(request: Request) -> Response:
    context = web(request)
    try:
        claim = context.reply_links.read(str(request.path_params["token"]))
    except Unauthorized as exc:
        return _refused(exc, context)
    ttl_ms = int(max(1.0, claim.expires_at - time.time()) * 1000) + 60_000
    if not await context.store.use_once(claim.nonce, ttl_ms):
        return _page("Link used", "This link was already used.", state="used", status=409)
    record = await context.hosts.get_host(claim.host)
    settings = record["settings"] if record is not None else {}
    busy_line = str(settings.get("busy_message") or DEFAULT_BUSY)
    try:
        await context.room.handle_host(claim.host, _reply_for(claim, busy_line), "email")
    except (AlreadyResolved, UnknownGuest):
        label, answered, _ = await _guest(context, claim)
        lead = f"{html.escape(label)} was already {answered or 'answered'}."
        return _page("Already answered", lead, state="answered", status=409)
    except Exception:
        await context.store.forget_once(claim.nonce)  # nothing happened: the link still works
        raise
    label, _, _ = await _guest(context, claim)
    done = f"{html.escape(label)} was {DONE[claim.action]}."
    return _page("Done", done, state="done")


routes: list[BaseRoute] = [
    Route("/reply/{token}", show, methods=["GET", "HEAD"], name="reply_page"),
    Route("/reply/{token}", act, methods=["POST"], name="reply_act"),
]
