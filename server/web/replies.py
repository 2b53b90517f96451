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
from server import i18n
from server.access.reply_links import LinkExpired, ReplyClaim
from server.web.context import WebContext, web
from server.web.pages import language, page_headers, render

log = logging.getLogger("foyer.replies")

# Outcome events (lobby.reply_for_outcome) with a sentence of their own.
ANSWERED = ("admit", "merge", "new_meeting", "busy", "deny")


class _Page:
    """One reply page in the visitor's language (``?lang=`` or Accept-Language:
    the host's browser, which opened the email's link)."""

    def __init__(self, request: Request) -> None:
        self.lang = language(request)

    def t(self, key: str, guest: str = "") -> str:
        """A catalogue text, HTML-escaped, with the guest's label in it."""
        return html.escape(i18n.t(self.lang, f"reply.{key}", {"guest": guest}))

    def answer(
        self, title: str, lead: str, *, state: str, form: str = "", status: int = 200
    ) -> Response:
        """``title`` and ``lead`` are catalogue keys or HTML already escaped."""
        markup = {"title": title, "lead": lead, "form": form}
        body = render("reply.html", self.lang, {"lang": self.lang, "state": state}, markup)
        return HTMLResponse(body, status_code=status, headers=page_headers(frameable=False))


def _refused(page: _Page, exc: Unauthorized, context: WebContext) -> Response:
    console = html.escape(f"{context.public_url or ''}/host")
    if isinstance(exc, LinkExpired):
        lead = f'{page.t("expired")} <a href="{console}">{page.t("open_console")}</a>'
        return page.answer(page.t("expired_title"), lead, state="expired", status=410)
    return page.answer(page.t("invalid_title"), page.t("invalid"), state="invalid", status=404)


async def _guest(context: WebContext, claim: ReplyClaim) -> tuple[str | None, str | None, str]:
    """The guest's label (None: not known), how it was answered if it was (an
    outcome of ``ANSWERED``, or ``other``), and its state."""
    snapshot = await context.store.snapshot(claim.host, [claim.guest], limit=1)
    known = snapshot.known.get(claim.guest)
    found = await context.store.guest_info(claim.host, claim.guest)
    label = str(found[1]["label"]) if found and found[1].get("label") else None
    if known is None or known.state in lobby.QUEUED:
        return label, None, known.state if known else "gone"
    if known.outcome is not None:
        event = lobby.reply_for_outcome(str(known.outcome.get("type")), known.outcome.get("mode"))
        return label, event.value if event.value in ANSWERED else "other", known.state
    return label, None, "gone"  # it left, timed out or expired: nobody answered it


def _already(page: _Page, label: str, answered: str, status: int = 200) -> Response:
    lead = page.t(f"already_{answered}", label)
    return page.answer(page.t("already_title"), lead, state="answered", status=status)


async def show(request: Request) -> Response:
    context = web(request)
    page = _Page(request)
    token = str(request.path_params["token"])
    try:
        claim = context.reply_links.read(token)
    except Unauthorized as exc:
        return _refused(page, exc, context)
    known, answered, state = await _guest(context, claim)
    label = known or i18n.t(page.lang, "reply.the_guest")
    if answered is not None:
        return _already(page, label, answered)
    if state == "gone":
        return page.answer(page.t("gone_title"), page.t("gone", label), state="gone")
    action = claim.action
    form = (
        f'<form method="post" action="/reply/{html.escape(token)}?lang={page.lang}">'
        f'<button id="confirm" type="submit" class="primary">'
        f"{page.t(f'button_{action}', label)}</button></form>"
    )
    title = page.t(f"ask_{action}", label)
    return page.answer(title, page.t("waiting", label), state="ask", form=form)


def _reply_for(claim: ReplyClaim, busy_line: str) -> Message:
    if claim.action == "admit":
        return Admit(guest=claim.guest)
    if claim.action == "new_meeting":
        return NewMeeting(guest=claim.guest)
    return Busy(guest=claim.guest, message=busy_line)


async def act(request: Request) -> Response:
    context = web(request)
    page = _Page(request)
    try:
        claim = context.reply_links.read(str(request.path_params["token"]))
    except Unauthorized as exc:
        return _refused(page, exc, context)
    ttl_ms = int(max(1.0, claim.expires_at - time.time()) * 1000) + 60_000
    if not await context.store.use_once(claim.nonce, ttl_ms):
        return page.answer(page.t("used_title"), page.t("used"), state="used", status=409)
    record = await context.hosts.get_host(claim.host)
    settings = record["settings"] if record is not None else {}
    # The host's own line, else a polite one in the language the host reads.
    busy_line = str(settings.get("busy_message") or i18n.t(page.lang, "reply.busy_line"))
    try:
        await context.room.handle_host(claim.host, _reply_for(claim, busy_line), "email")
    except (AlreadyResolved, UnknownGuest):
        known, answered, _ = await _guest(context, claim)
        label = known or i18n.t(page.lang, "reply.the_guest")
        if answered is None:
            return page.answer(
                page.t("gone_title"), page.t("gone", label), state="gone", status=409
            )
        return _already(page, label, answered, status=409)
    except Exception:
        await context.store.forget_once(claim.nonce)  # nothing happened: the link still works
        raise
    known, _, _ = await _guest(context, claim)
    label = known or i18n.t(page.lang, "reply.the_guest")
    return page.answer(page.t("done_title"), page.t(f"done_{claim.action}", label), state="done")


routes: list[BaseRoute] = [
    Route("/reply/{token}", show, methods=["GET", "HEAD"], name="reply_page"),
    Route("/reply/{token}", act, methods=["POST"], name="reply_act"),
]
