"""The console's "Your link" panel in a real browser: copy, share by email, the
QR code, the link builder, a custom slug checked rule by rule (keep or retire
the old link) and the email setting (issue 14, points 5, 6 and 8)."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import SCREENSHOTS, console_url, guest_url, new_context, screenshot
from tests.support import FoyerProcess, spawn_foyer


@pytest.fixture
def host(foyer_web: FoyerProcess) -> dict[str, Any]:
    return foyer_web.create_host("Ada Lovelace")


@pytest.fixture
def clip_context(browser: Browser) -> Any:
    """A context whose pages may read and write the clipboard."""
    ctx = new_context(browser)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        yield ctx
    finally:
        ctx.close()


def open_panel(context: BrowserContext, foyer: FoyerProcess, token: str) -> Page:
    page = context.new_page()
    page.goto(console_url(foyer, token))
    expect(page.locator("#conn")).to_have_text("online")
    expect(page.locator("#link-panel")).to_be_visible()
    return page


def rules(page: Page) -> dict[str, str]:
    """rule -> "true" / "false" as the page shows it now."""
    found: dict[str, str] = page.eval_on_selector_all(
        "#slug-rules li",
        "items => Object.fromEntries(items.map(i => [i.dataset.rule, i.dataset.ok]))",
    )
    return found


def drawn(img: Any) -> int:
    """The image's width once it has loaded and decoded (0: it did not)."""
    width: int = img.evaluate("img => img.decode().then(() => img.naturalWidth, () => 0)")
    return width


def test_your_link_copy_share_qr_and_builder(
    clip_context: BrowserContext,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
) -> None:
    errors: list[str] = []
    clip_context.on("weberror", lambda error: errors.append(str(error.error)))
    console = open_panel(clip_context, foyer_web, host["token"])
    link = host["link"]
    expect(console.locator("#my-link")).to_have_text(link)
    expect(console.locator("#my-link")).to_have_attribute("href", link)

    console.click("#copy-link")
    expect(console.locator("#status")).to_have_text("Link copied.")
    assert console.evaluate("navigator.clipboard.readText()") == link

    mailto = urlsplit(str(console.locator("#email-link").get_attribute("href")))
    assert mailto.scheme == "mailto"
    draft = {k: v[0] for k, v in parse_qs(mailto.query).items()}
    assert draft["subject"] == "Meet with Ada Lovelace"
    assert link in draft["body"] and "Ada Lovelace" in draft["body"]

    qr = console.locator("#qr")
    expect(qr).to_have_attribute("src", f"/l/{host['slug']}/qr.svg")
    assert drawn(qr) > 0
    assert link in str(qr.get_attribute("alt"))

    # The builder: every option, the link follows live, and so does the QR code.
    console.click("#builder summary")
    # A title loses spaces and & $ + , / : ; = ? @ # < > [ ] { } | \ ^ % (the
    # protocol's rule): the builder says what guests will see and builds that.
    hint = console.locator("#opt-title-hint")
    console.fill("#opt-title", "Intro-call")
    expect(hint).to_be_hidden()
    console.fill("#opt-title", "Intro call: Q3 & more")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("Guests will see “IntrocallQ3more”")
    expect(hint).to_contain_text("# $ % & + , / : ; < = > ? @ [ \\ ] ^ { | }")
    console.fill("#opt-title", "&&")
    expect(hint).to_contain_text("the link's default title is used")
    expect(console.locator("#built-link")).to_have_text(link)
    console.fill("#opt-title", "Intro call")
    expect(hint).to_contain_text("“Introcall”")
    console.fill("#opt-duration", "15")
    console.select_option("#opt-region", "eu-west")
    console.select_option("#opt-recording", "automatic")
    console.check("#opt-announce")
    built = f"{link}?title=Introcall&duration=15&region=eu-west&recording=automatic&announce=true"
    expect(console.locator("#built-link")).to_have_text(built)
    expect(qr).to_have_attribute("src", re.compile(r"qr\.svg\?title=Introcall&duration=15"))
    assert drawn(qr) > 0
    draft = {
        k: v[0]
        for k, v in parse_qs(
            urlsplit(str(console.locator("#email-link").get_attribute("href"))).query
        ).items()
    }
    assert built in draft["body"]
    screenshot(console, "console-your-link")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # the panel alone (docs/img/console-link.png)
    console.locator("#link-panel").screenshot(path=str(SCREENSHOTS / "console-link-panel.png"))
    console.click("#copy-built")
    expect(console.locator("#status")).to_have_text("Link copied.")
    assert console.evaluate("navigator.clipboard.readText()") == built

    # The built link works: the guest page shows its topic.
    guest = clip_context.new_page()
    guest.goto(built)
    expect(guest.locator("#topic")).to_have_text("Topic: Introcall")
    # A hand-made link with a space: the guest reads the title the host will
    # read (it said "Intro call" while the knock carried "Introcall").
    guest.goto(f"{link}?title=Intro%20call")
    expect(guest.locator("#topic")).to_have_text("Topic: Introcall")
    assert errors == []


def test_custom_slug_named_rules_then_retire_the_old_link(
    browser: Browser,
    context: BrowserContext,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    page_errors: list[str],
) -> None:
    other = foyer_web.create_host("Grace Hopper")
    console = open_panel(context, foyer_web, host["token"])
    field = console.locator("#slug-input")
    save = console.locator("#slug-save")
    expect(console.locator("#slug-prefix")).to_have_text(f"{foyer_web.http_url}/l/")

    cases = [
        ("ab", {"length"}),
        ("my.link", {"no_periods"}),
        ("my_link", {"characters"}),
        ("team-dev", {"not_dev"}),
        ("settings", {"not_reserved"}),
        (other["slug"], {"available"}),
    ]
    for typed, failing in cases:
        field.fill(typed)
        for rule in ("length", "characters", "no_periods", "not_dev", "not_reserved", "available"):
            item = console.locator(f'#slug-rules li[data-rule="{rule}"]')
            expect(item).to_have_attribute("data-ok", "false" if rule in failing else "true")
        expect(save).to_be_disabled()
    expect(console.locator('#slug-rules li[data-rule="available"]')).to_have_class(
        re.compile("bad")
    )
    screenshot(console, "console-slug-taken")

    old, new = host["slug"], "ada-" + uuid.uuid4().hex[:8]
    field.fill(new.upper())  # lowercased, as the server will
    expect(save).to_be_enabled()
    assert set(rules(console).values()) == {"true"}
    console.check('input[name="old"][value="retire"]')
    screenshot(console, "console-slug-ready")
    save.click()
    new_link = f"{foyer_web.http_url}/l/{new}"
    expect(console.locator("#status")).to_have_text(
        f"Your link is now {new_link}; the old one no longer works."
    )
    expect(console.locator("#my-link")).to_have_text(new_link)
    expect(console.locator("#qr")).to_have_attribute("src", f"/l/{new}/qr.svg")

    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        answer = guest.goto(guest_url(foyer_web, old))
        assert answer is not None and answer.status == 410
        expect(guest.locator("#heading")).to_have_text("Link no longer in use")
        expect(guest.locator("#app")).to_have_attribute("data-outcome", "retired_link")
        screenshot(guest, "guest-retired-link")
        guest.goto(new_link)
        expect(guest.locator("#host-name")).to_have_text("Ada Lovelace")
    finally:
        guest_ctx.close()

    # Changing again and keeping the old link (the default): it still leads here.
    newer = "ada-" + uuid.uuid4().hex[:8]
    console.check('input[name="old"][value="keep"]')
    field.fill(newer)
    expect(save).to_be_enabled()
    save.click()
    expect(console.locator("#status")).to_have_text(
        f"Your link is now {foyer_web.http_url}/l/{newer}."
    )
    kept = httpx.get(new_link, follow_redirects=False, timeout=10)
    assert kept.status_code == 301 and kept.headers["location"] == f"/l/{newer}"
    assert page_errors == []


def test_email_setting_only_when_email_is_configured(
    context: BrowserContext,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
    redis_url: str,
) -> None:
    console = open_panel(context, foyer_web, host["token"])
    expect(console.locator("#email-setting")).to_be_hidden()  # no SMTP, no outbox
    console.close()

    with spawn_foyer(redis_url, {"FOYER_MAIL_OUTBOX": "true"}) as mailing:
        ada = mailing.create_host("Ada Lovelace", email="ada@example.com")
        console = open_panel(context, mailing, ada["token"])
        setting = console.locator("#email-setting")
        expect(setting).to_be_visible()
        expect(console.locator("#email-mode")).to_have_value("away")
        console.select_option("#email-mode", "always")
        expect(console.locator("#status")).to_have_text("Email setting saved.")
        with mailing.api() as api:
            assert api.get(f"/api/hosts/{ada['id']}").json()["settings"]["email_mode"] == "always"
        setting.scroll_into_view_if_needed()
        screenshot(console, "console-email-setting")
        # Another tab hears the change (the settings event) and shows it.
        second = open_panel(context, mailing, ada["token"])
        expect(second.locator("#email-mode")).to_have_value("always")
        console.select_option("#email-mode", "never")
        expect(second.locator("#email-mode")).to_have_value("never")
        # The email's language (and its reply pages'): another setting.
        expect(console.locator("#email-language")).to_have_value("en")
        console.select_option("#email-language", "de")
        expect(console.locator("#status")).to_have_text("Email setting saved.")
        expect(second.locator("#email-language")).to_have_value("de")
        with mailing.api() as api:
            assert api.get(f"/api/hosts/{ada['id']}").json()["settings"]["language"] == "de"
        # The older spelling (email_notifications: false) means never: the
        # console showed "away" for it, and emails that would not come.
        grace = mailing.create_host("Grace Hopper", email="grace@example.com")
        with mailing.api() as api:
            r = api.patch(f"/api/hosts/{grace['id']}/settings", json={"email_notifications": False})
            assert r.status_code == 200, r.text
        third = open_panel(context, mailing, grace["token"])
        expect(third.locator("#email-mode")).to_have_value("never")


def test_meet_now_copies_and_opens_a_new_meeting_each_click(
    browser: Browser,
    clip_context: BrowserContext,
    site: Any,
    foyer_web: FoyerProcess,
    host: dict[str, Any],
) -> None:
    console = open_panel(clip_context, foyer_web, host["token"])
    meeting_page = re.compile(re.escape(site.origin) + r"/meet/.+")

    def meet_now() -> tuple[str, str]:
        """Click Meet now: (the page it opened, the link it copied)."""
        with clip_context.expect_page() as opened:
            console.click("#meet-now")
        tab = opened.value
        tab.wait_for_url(meeting_page)
        expect(console.locator("#status")).to_contain_text("Meeting link copied and opened")
        shared = str(console.evaluate("navigator.clipboard.readText()"))
        url = tab.url
        tab.close()
        return url, shared

    console.fill("#meet-name", "Standup")
    first_url, first_link = meet_now()
    expect(console.locator("#status")).to_contain_text(first_link)
    screenshot(console, "console-meet-now")
    second_url, second_link = meet_now()
    assert first_url != second_url and first_link != second_link
    assert re.search(r"/m/[^/]+$", first_link), first_link  # the meeting's join link

    # A guest who opens the copied link reaches the meeting's knock page.
    guest_ctx = new_context(browser)
    try:
        guest = guest_ctx.new_page()
        answer = guest.goto(first_link)
        assert answer is not None and answer.status == 200
        expect(guest.locator("body")).to_contain_text("Knock for Ada Lovelace")
    finally:
        guest_ctx.close()

    # "Instant meetings use my personal room": Meet now opens the personal room,
    # every time, and copies the personal link.
    console.check("#instant-personal")
    expect(console.locator("#status")).to_have_text("Saved.")
    room_url, room_link = meet_now()
    again_url, _ = meet_now()
    assert room_url == again_url and room_link == host["link"]
    console.uncheck("#instant-personal")
    expect(console.locator("#status")).to_have_text("Saved.")
    assert meet_now()[0] != room_url
