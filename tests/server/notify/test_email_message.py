"""The away email's text and HTML: what a host reads, and nothing a guest can inject."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from server.notify.email_message import compose, waited
from server.storage.hosts import HostRecord

NOW = 1_800_000_000_000.0


@pytest.mark.parametrize(
    ("ms", "said"),
    [
        (0, "waiting under a minute"),
        (-5_000, "waiting under a minute"),  # a clock a little ahead
        (59_999, "waiting under a minute"),
        (60_000, "waiting 1 min"),
        (59 * 60_000 + 59_000, "waiting 59 min"),
        (60 * 60_000, "waiting 1 h"),
        (125 * 60_000, "waiting 2 h 5 min"),
    ],
)
def test_waited_reads_at_a_glance(ms: float, said: str) -> None:
    assert waited(ms) == said


def _host(**settings: Any) -> HostRecord:
    return {  # type: ignore[typeddict-item]
        "id": "h",
        "name": "Ada <Lovelace>",
        "email": "ada@example.com",
        "settings": settings,
    }


def _guest(gid: str, label: str, minutes: float, **extra: Any) -> dict[str, Any]:
    return {"id": gid, "label": label, "knocked_at": NOW - minutes * 60_000, **extra}


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links.append((data.strip(), self._href))
            self._href = None


def test_every_guest_with_its_buttons_in_both_parts() -> None:
    waiting = [
        _guest("g-1", "Ann (Guest)", 3, email="ann@example.com", options={"title": "Pricing"}),
        _guest("g-2", "Ben (Guest)", 0.2, options={}),
    ]
    message = compose(
        _host(),
        waiting,
        "Foyer <foyer@localhost>",
        "https://foyer.example/host",
        link=lambda guest, action: f"https://foyer.example/reply/{guest}/{action}?a=1&b=2",
        now=NOW,
    )
    assert message["Subject"] == "2 guests are waiting for you"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "- Ann (Guest) <ann@example.com>, waiting 3 min: Pricing" in text
    assert "- Ben (Guest), waiting under a minute\n" in text  # no empty topic after a colon
    assert "    Admit: https://foyer.example/reply/g-2/admit?a=1&b=2" in text
    page = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    anchors = _Anchors()
    anchors.feed(page)
    assert anchors.links == [
        (label, f"https://foyer.example/reply/{guest}/{action}?a=1&b=2")
        for guest in ("g-1", "g-2")
        for label, action in (("Admit", "admit"), ("New meeting", "new_meeting"), ("Busy", "busy"))
    ] + [("Open your console to answer", "https://foyer.example/host")]
    assert "Hello Ada &lt;Lovelace&gt;," in page
    assert "&ldquo;Pricing&rdquo;" in page and "waiting 3 min" in page
    assert "Each button acts once" in page


def test_what_a_guest_typed_is_text_not_markup() -> None:
    waiting = [
        _guest(
            "g-1",
            '<script>alert(1)</script> "x" (Guest)',
            1,
            email="a<b>@example.com",
            options={"title": "<img src=x onerror=alert(1)>"},
        )
    ]
    message = compose(_host(), waiting, "Foyer <f@localhost>", "https://f.example/host", now=NOW)
    page = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    anchors = _Anchors()
    anchors.feed(page)
    assert anchors.scripts == 0 and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Without reply links there are no buttons and no word about them.
    assert anchors.links == [("Open your console to answer", "https://f.example/host")]
    assert "Each button" not in page


def test_a_long_queue_is_counted_past_the_listed_guests() -> None:
    waiting = [_guest(f"g-{i}", f"G{i} (Guest)", 1) for i in range(2)]
    message = compose(_host(), waiting, "Foyer <f@localhost>", "https://f/host", total=25, now=NOW)
    assert message["Subject"] == "25 guests are waiting for you"
    assert "- and 23 more" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "and 23 more" in message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_the_email_speaks_the_hosts_language() -> None:
    waiting = [
        _guest("g-1", "Ann (Guest)", 75, options={"title": "Bilan"}),
        _guest("g-2", "Ben (Guest)", 0),
    ]
    message = compose(
        _host(language="fr"),
        waiting,
        "Foyer <f@localhost>",
        "https://f.example/host",
        link=lambda guest, action: f"https://f.example/reply/{guest}/{action}?lang=fr",
        total=3,
        now=NOW,
    )
    assert message["Subject"] == "3 invités vous attendent"
    assert message["Content-Language"] == "fr"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.startswith("Bonjour Ada <Lovelace>,\n\n3 invités vous attendent sur votre lien")
    assert "- Ann (Guest), attend depuis 1 h 15 min: Bilan" in text
    assert "- Ben (Guest), attend depuis moins d'une minute" in text
    assert "    Admettre: https://f.example/reply/g-1/admit?lang=fr" in text
    assert "- et 1 de plus" in text and "Ouvrez votre console pour répondre: " in text
    page = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert '<html lang="fr">' in page and "Nouvelle réunion</a>" in page
    assert "Chaque bouton n&#x27;agit qu&#x27;une fois" in page


@pytest.mark.parametrize("language", [None, "xx", 7])
def test_an_unset_or_unknown_language_is_english(language: Any) -> None:
    settings = {} if language is None else {"language": language}
    message = compose(
        _host(**settings), [_guest("g-1", "Ann (Guest)", 0)], "F <f@l>", "https://f/host", now=NOW
    )
    assert message["Subject"] == "Ann (Guest) is waiting for you"
    assert message["Content-Language"] == "en"


@pytest.mark.parametrize(
    ("lang", "ms", "said"),
    [
        ("de", 30_000, "wartet seit weniger als einer Minute"),
        ("de", 120 * 60_000, "wartet seit 2 Std."),
        ("es", 61 * 60_000, "esperando desde hace 1 h 1 min"),
    ],
)
def test_waited_in_each_language(lang: str, ms: float, said: str) -> None:
    assert waited(ms, lang) == said
