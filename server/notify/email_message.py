"""The away email itself: text and HTML, built from the waiting guests.

Pure formatting, no I/O: ``server.notify.email`` decides when to send and
where. The HTML part is what most mail clients show, so it is laid out as a
mail client renders it (a table, inline styles, no stylesheet, no script,
no image) and every value in it is escaped; the text part says the same, with
the reply links written out.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from server.storage.hosts import HostRecord

LINK_LABELS = {"admit": "Admit", "new_meeting": "New meeting", "busy": "Busy"}
EMAIL_GUESTS = 20  # listed with their links; the rest are counted

_FONT = "font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_BUTTON = (
    "display:inline-block;padding:8px 14px;margin:4px 6px 0 0;border-radius:6px;"
    "font-weight:600;font-size:14px;text-decoration:none;"
)
_BUTTONS = {
    "admit": _BUTTON + "background:#2a5bd7;color:#ffffff;border:1px solid #2a5bd7;",
    "other": _BUTTON + "background:#ffffff;color:#1c1c1c;border:1px solid #b9b4aa;",
}


def waited(ms: float) -> str:
    """How long a guest has waited, as a host reads it at a glance."""
    minutes = int(max(0.0, ms) // 60000)
    if minutes < 1:
        return "waiting under a minute"
    if minutes < 60:
        return f"waiting {minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"waiting {hours} h {rest} min" if rest else f"waiting {hours} h"


def compose(
    record: HostRecord,
    waiting: list[dict[str, Any]],
    sender: str,
    console: str,
    *,
    link: Callable[[str, str], str] | None = None,
    total: int | None = None,
    now: float | None = None,
) -> EmailMessage:
    """One email listing the guests waiting, oldest first (text and HTML), each
    with one-click reply links when ``link`` makes them."""
    count = max(total or 0, len(waiting))
    subject = (
        f"{waiting[0]['label']} is waiting for you"
        if count == 1
        else f"{count} guests are waiting for you"
    )
    now_ms = time.time() * 1000 if now is None else now
    lines, cards = [], []
    for guest in waiting:
        urls = {a: link(guest["id"], a) for a in LINK_LABELS} if link is not None else {}
        lines += _text_lines(guest, urls, now_ms)
        cards.append(_html_card(guest, urls, now_ms))
    more = count - len(waiting)
    if more > 0:
        lines.append(f"- and {more} more")
        cards.append(f'<tr><td style="padding:8px 0;color:#5f5b54">and {more} more</td></tr>')
    text = (
        f"Hello {record['name']},\n\n{subject} on your personal link.\n\n"
        + "\n".join(lines)
        + f"\n\nOpen your console to answer: {console}\n"
    )
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = record["email"]
    message.set_content(text)
    body = _html(record["name"], subject, cards, console, links=link is not None)
    message.add_alternative(body, subtype="html")
    return message


def _who(guest: dict[str, Any]) -> str:
    label = str(guest["label"])
    return label + (f" <{guest['email']}>" if guest.get("email") else "")


def _text_lines(guest: dict[str, Any], urls: dict[str, str], now_ms: float) -> list[str]:
    topic = guest.get("options", {}).get("title", "")
    head = f"- {_who(guest)}, {waited(now_ms - guest['knocked_at'])}"
    return [head + (f": {topic}" if topic else "")] + [
        f"    {LINK_LABELS[action]}: {url}" for action, url in urls.items()
    ]


def _html_card(guest: dict[str, Any], urls: dict[str, str], now_ms: float) -> str:
    e = html.escape
    topic = guest.get("options", {}).get("title", "")
    details = [e(waited(now_ms - guest["knocked_at"]))]
    if guest.get("email"):
        details.insert(0, e(guest["email"]))
    if topic:
        details.append(f"&ldquo;{e(topic)}&rdquo;")
    buttons = "".join(
        f'<a href="{e(url)}" style="{_BUTTONS["admit" if action == "admit" else "other"]}">'
        f"{LINK_LABELS[action]}</a>"
        for action, url in urls.items()
    )
    return (
        '<tr><td style="padding:12px 0;border-top:1px solid #e4e0d8">'
        f'<div style="font-size:16px;font-weight:700">{e(guest["label"])}</div>'
        f'<div style="font-size:14px;color:#5f5b54">{" &middot; ".join(details)}</div>'
        + (f"<div>{buttons}</div>" if buttons else "")
        + "</td></tr>"
    )


def _html(name: str, subject: str, cards: list[str], console: str, *, links: bool) -> str:
    e = html.escape
    note = (
        '<p style="margin:12px 0 0;font-size:12px;color:#5f5b54">Each button acts once, '
        "after you confirm on the page it opens.</p>"
        if links
        else ""
    )
    return (
        '<!doctype html><html><body style="margin:0;padding:0;background:#f6f4ef">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        'style="background:#f6f4ef"><tr><td align="center" style="padding:24px 12px">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        f'style="max-width:560px;background:#ffffff;border:1px solid #e4e0d8;'
        f'border-radius:10px;{_FONT};color:#1c1c1c">'
        '<tr><td style="padding:20px 24px">'
        '<div style="font-size:12px;font-weight:700;letter-spacing:.12em;color:#5f5b54">'
        "FOYER</div>"
        f'<p style="font-size:15px;margin:16px 0 4px">Hello {e(name)},</p>'
        f'<h1 style="font-size:20px;margin:0 0 12px">{e(subject)}</h1>'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0">'
        + "".join(cards)
        + "</table>"
        f'<p style="margin:16px 0 0;font-size:14px"><a href="{e(console)}" '
        'style="color:#2a5bd7">Open your console to answer</a></p>'
        + note
        + "</td></tr></table></td></tr></table></body></html>"
    )
