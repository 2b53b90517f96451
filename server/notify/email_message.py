"""The away email itself: text and HTML, built from the waiting guests.

Pure formatting, no I/O: ``server.notify.email`` decides when to send and
where. The HTML part is what most mail clients show, so it is laid out as a
mail client renders it (a table, inline styles, no stylesheet, no script,
no image) and every value in it is escaped; the text part says the same, with
the reply links written out. Both are in the host's ``language`` setting
(English unless set), from the same catalogues as the pages.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from server import i18n
from server.storage.hosts import HostRecord

ACTIONS = ("admit", "new_meeting", "busy")  # the reply links, in this order
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


def waited(ms: float, lang: str = i18n.DEFAULT) -> str:
    """How long a guest has waited, as a host reads it at a glance."""
    minutes = int(max(0.0, ms) // 60000)
    if minutes < 1:
        return i18n.t(lang, "email.waited_new")
    if minutes < 60:
        return i18n.t(lang, "email.waited_min", {"minutes": str(minutes)})
    hours, rest = divmod(minutes, 60)
    values = {"hours": str(hours), "minutes": str(rest)}
    return i18n.t(lang, "email.waited_hours_min" if rest else "email.waited_hours", values)


def email_language(record: HostRecord) -> str:
    """The host's ``language`` setting when Foyer speaks it, else English."""
    lang = record["settings"].get("language")
    return lang if isinstance(lang, str) and lang in i18n.LANGUAGES else i18n.DEFAULT


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
    lang = email_language(record)

    def t(key: str, **values: str) -> str:
        return i18n.t(lang, f"email.{key}", values)

    count = max(total or 0, len(waiting))
    first = str(waiting[0]["label"])
    many = count != 1
    subject = t("subject_many", count=str(count)) if many else t("subject_one", guest=first)
    lead = t("lead_many", count=str(count)) if many else t("lead_one", guest=first)
    labels = {action: t(action) for action in ACTIONS}
    now_ms = time.time() * 1000 if now is None else now
    lines, cards = [], []
    for guest in waiting:
        urls = {a: link(guest["id"], a) for a in ACTIONS} if link is not None else {}
        since = waited(now_ms - guest["knocked_at"], lang)
        lines += _text_lines(guest, since, urls, labels)
        cards.append(_html_card(guest, since, urls, labels))
    more = count - len(waiting)
    if more > 0:
        lines.append(f"- {t('more', count=str(more))}")
        cards.append(
            f'<tr><td style="padding:8px 0;color:#5f5b54">'
            f"{html.escape(t('more', count=str(more)))}</td></tr>"
        )
    hello = t("hello", name=record["name"])
    text = f"{hello}\n\n{lead}\n\n" + "\n".join(lines) + f"\n\n{t('open_console')}: {console}\n"
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = record["email"]
    message.set_content(text)
    page = _Page(lang, hello, subject, console, t("open_console"))
    note = t("buttons_note") if link is not None else ""
    message.add_alternative(page.render(cards, note), subtype="html")
    message["Content-Language"] = lang  # after the parts: making them moves Content-* down
    return message


def _who(guest: dict[str, Any]) -> str:
    label = str(guest["label"])
    return label + (f" <{guest['email']}>" if guest.get("email") else "")


def _text_lines(
    guest: dict[str, Any], since: str, urls: dict[str, str], labels: dict[str, str]
) -> list[str]:
    topic = guest.get("options", {}).get("title", "")
    head = f"- {_who(guest)}, {since}"
    return [head + (f": {topic}" if topic else "")] + [
        f"    {labels[action]}: {url}" for action, url in urls.items()
    ]


def _html_card(
    guest: dict[str, Any], since: str, urls: dict[str, str], labels: dict[str, str]
) -> str:
    e = html.escape
    topic = guest.get("options", {}).get("title", "")
    details = [e(since)]
    if guest.get("email"):
        details.insert(0, e(guest["email"]))
    if topic:
        details.append(f"&ldquo;{e(topic)}&rdquo;")
    buttons = "".join(
        f'<a href="{e(url)}" style="{_BUTTONS["admit" if action == "admit" else "other"]}">'
        f"{e(labels[action])}</a>"
        for action, url in urls.items()
    )
    return (
        '<tr><td style="padding:12px 0;border-top:1px solid #e4e0d8">'
        f'<div style="font-size:16px;font-weight:700">{e(guest["label"])}</div>'
        f'<div style="font-size:14px;color:#5f5b54">{" &middot; ".join(details)}</div>'
        + (f"<div>{buttons}</div>" if buttons else "")
        + "</td></tr>"
    )


@dataclass(frozen=True)
class _Page:
    """The HTML part around the guests' cards (every text already in the host's language)."""

    lang: str
    hello: str
    subject: str
    console: str
    open_console: str

    def render(self, cards: list[str], note: str) -> str:
        e = html.escape
        small = '<p style="margin:12px 0 0;font-size:12px;color:#5f5b54">'
        return (
            f'<!doctype html><html lang="{e(self.lang)}">'
            '<body style="margin:0;padding:0;background:#f6f4ef">'
            '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
            'style="background:#f6f4ef"><tr><td align="center" style="padding:24px 12px">'
            '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
            f'style="max-width:560px;background:#ffffff;border:1px solid #e4e0d8;'
            f'border-radius:10px;{_FONT};color:#1c1c1c">'
            '<tr><td style="padding:20px 24px">'
            '<div style="font-size:12px;font-weight:700;letter-spacing:.12em;color:#5f5b54">'
            "FOYER</div>"
            f'<p style="font-size:15px;margin:16px 0 4px">{e(self.hello)}</p>'
            f'<h1 style="font-size:20px;margin:0 0 12px">{e(self.subject)}</h1>'
            '<table role="presentation" width="100%" cellpadding="0" cellspacing="0">'
            + "".join(cards)
            + "</table>"
            f'<p style="margin:16px 0 0;font-size:14px"><a href="{e(self.console)}" '
            f'style="color:#2a5bd7">{e(self.open_console)}</a></p>'
            + (f"{small}{e(note)}</p>" if note else "")
            + "</td></tr></table></td></tr></table></body></html>"
        )
