"""Email that lets the host answer (issue 12, point 3): the away email's links
open a confirmation page (a GET never acts), the button applies the reply once,
through the same script as a device's; with no SMTP server the email is an
``.eml`` file in the outbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from foyer_client import GuestClient, HostClient
from protocol.messages import Admitted, BusyNotice
from server.ops.embedded import free_port
from tests.smtp import Inbox, smtp_server
from tests.support import FoyerProcess, spawn_foyer, valkey_server

LINK = re.compile(r"(Admit|New meeting|Busy): (http://\S+/reply/\S+)")


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def mailing(redis_url: str, smtp: tuple[Inbox, int]) -> Iterator[FoyerProcess]:
    port = free_port()
    env = {
        "FOYER_SMTP_URL": f"smtp://127.0.0.1:{smtp[1]}",
        "FOYER_MAIL_DELAY": "0.2",
        "FOYER_MAIL_COOLDOWN": "0",
        "FOYER_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    proc = FoyerProcess(redis_url, env)
    proc.port = port  # the links point at the process itself
    with proc:
        yield proc


def _mailed_host(
    mailing: FoyerProcess, name: str, email: str, **settings: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A host with an address and these settings; returns it and its settings."""
    host = mailing.create_host(name, email=email)
    with mailing.api() as api:
        r = api.patch(f"/api/hosts/{host['id']}/settings", json=settings)
        assert r.status_code == 200, r.text
    return host, r.json()["settings"]


async def _links_for(inbox: Inbox, address: str, guest_label: str) -> dict[str, str]:
    """The reply links of ``guest_label`` in the newest email to ``address``."""
    for _ in range(100):
        with inbox.lock:
            mails = [m for m in inbox.messages if m["To"] == address]
        if mails:
            text = mails[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
            block = text.split(f"- {guest_label}", 1)[1].split("\n- ", 1)[0]
            return {label: url for label, url in LINK.findall(block)}
        await asyncio.sleep(0.1)
    raise AssertionError(f"no email to {address}")


async def test_a_link_shows_then_acts_once(mailing: FoyerProcess, smtp: tuple[Inbox, int]) -> None:
    host = mailing.create_host("Away Ada", email="ada-links@example.com")
    async with GuestClient(mailing.ws_url, host["slug"], name="Ann") as ann:
        links = await _links_for(smtp[0], "ada-links@example.com", "Ann (Guest)")
        assert set(links) == {"Admit", "New meeting", "Busy"}
        web = httpx.AsyncClient(timeout=10)
        shown = await web.get(links["Admit"])  # what a mail scanner does
        assert shown.status_code == 200 and 'method="post"' in shown.text
        assert ann.pending() == []  # a GET never acts
        done = await web.post(links["Admit"])
        assert done.status_code == 200 and "was admitted" in done.text
        assert (await ann.wait_for(Admitted)).mode == "admit"
        again = await web.post(links["Admit"])
        assert again.status_code == 409 and "already used" in again.text
        other = await web.post(links["Busy"])  # another link of the same guest
        assert other.status_code == 409 and "already admitted" in other.text
        await web.aclose()


async def test_the_pages_speak_the_hosts_language(
    mailing: FoyerProcess, smtp: tuple[Inbox, int]
) -> None:
    """The host's browser opens the link: its Accept-Language picks the page's
    language, and the default busy line the guest gets is in it too."""
    host = mailing.create_host("Away Anke", email="anke@example.com")
    async with (
        GuestClient(mailing.ws_url, host["slug"], name="Jo") as jo,
        GuestClient(mailing.ws_url, host["slug"], name="{form} <b>") as odd,
    ):
        links = await _links_for(smtp[0], "anke@example.com", "Jo (Guest)")
        german = {"Accept-Language": "de-CH,de;q=0.9,en;q=0.5"}
        async with httpx.AsyncClient(timeout=10, headers=german) as web:
            shown = await web.get(links["Busy"])
            assert shown.status_code == 200
            assert '<html lang="de">' in shown.text
            assert "Jo (Guest) sagen, dass Sie beschäftigt sind?" in shown.text
            assert "Jo (Guest) wartet auf Sie." in shown.text
            done = await web.post(links["Busy"])
            assert "Sie haben Jo (Guest) gesagt, dass Sie beschäftigt sind." in done.text
            busy = await jo.wait_for(BusyNotice)
            assert (
                busy.message
                == "Leider kann ich gerade nicht. Bitte versuchen Sie es später noch einmal."
            )
            again = await web.post(links["Admit"], params={"lang": "fr"})  # ?lang= wins
            assert again.status_code == 409 and '<html lang="fr">' in again.text
            assert "Vous avez déjà dit à Jo (Guest) que vous étiez occupé." in again.text

            # A label that looks like a template field or markup stays text.
            odd_links = await _links_for(smtp[0], "anke@example.com", "{form} <b> (Guest)")
            page = (await web.get(odd_links["Admit"])).text
            assert "{form} &lt;b&gt; (Guest) einlassen?" in page and "<b>" not in page
            assert page.count("<form") == 1
        assert not any(isinstance(m, Admitted) for m in odd.pending())  # a GET never acts


async def test_a_host_who_reads_french_gets_the_email_and_its_pages_in_french(
    mailing: FoyerProcess, smtp: tuple[Inbox, int]
) -> None:
    host, settings = _mailed_host(mailing, "Away Amélie", "amelie@example.com", language="fr")
    assert settings["language"] == "fr"
    async with GuestClient(mailing.ws_url, host["slug"], name="Léa") as lea:
        inbox = smtp[0]
        for _ in range(100):
            with inbox.lock:
                mails = [m for m in inbox.messages if m["To"] == "amelie@example.com"]
            if mails:
                break
            await asyncio.sleep(0.1)
        assert mails, "no email"
        assert mails[-1]["Subject"] == "Léa (Guest) vous attend"
        text = mails[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        link = re.search(r"Admettre: (http://\S+/reply/\S+)", text)
        assert link and link.group(1).endswith("?lang=fr"), text
        # An English browser still reads the page in the email's language.
        async with httpx.AsyncClient(timeout=10, headers={"Accept-Language": "en"}) as web:
            page = await web.get(link.group(1))
            assert "Admettre Léa (Guest) ?" in page.text
            done = await web.post(link.group(1))
            assert "Vous avez admis Léa (Guest)." in done.text
        assert (await lea.wait_for(Admitted)).mode == "admit"


async def test_a_device_and_an_email_click_race_and_one_wins(
    mailing: FoyerProcess, smtp: tuple[Inbox, int]
) -> None:
    host = mailing.create_host("Racing Rae", email="rae@example.com")
    async with GuestClient(mailing.ws_url, host["slug"], name="Bo") as bo:
        links = await _links_for(smtp[0], "rae@example.com", "Bo (Guest)")
        async with HostClient(mailing.ws_url, host["token"]) as device:
            clicked, replied = await asyncio.gather(
                asyncio.to_thread(httpx.post, links["Busy"], timeout=10),
                device.admit(bo.waiting.guest),
                return_exceptions=True,
            )
        won = [
            clicked.status_code == 200 if isinstance(clicked, httpx.Response) else False,
            not isinstance(replied, BaseException),
        ]
        assert sum(won) == 1, (clicked, replied)
        outcome = await bo.wait_for(Admitted, BusyNotice)
        assert outcome.type == ("busy" if won[0] else "admitted")


def test_an_expired_or_forged_link_says_so(mailing: FoyerProcess) -> None:
    now = int(time.time())
    claims: dict[str, Any] = {
        "kind": "reply",
        "sub": "h",
        "guest": "g",
        "action": "admit",
        "nonce": "n",
        "iat": now - 100,
        "exp": now - 10,
    }
    expired = jwt.encode(claims, mailing.secret, algorithm="HS256")
    r = httpx.get(f"{mailing.http_url}/reply/{expired}", timeout=10)
    assert r.status_code == 410 and "expired" in r.text and "/host" in r.text
    forged = jwt.encode({**claims, "exp": now + 600}, "not-the-secret-" * 3, algorithm="HS256")
    r = httpx.post(f"{mailing.http_url}/reply/{forged}", timeout=10)
    assert r.status_code == 404 and "not valid" in r.text


async def test_email_mode_always_mails_an_online_host(
    mailing: FoyerProcess, smtp: tuple[Inbox, int]
) -> None:
    host, _ = _mailed_host(mailing, "Always Al", "al@example.com", email_mode="always")
    async with (
        HostClient(mailing.ws_url, host["token"]),  # online: "away" would send nothing
        GuestClient(mailing.ws_url, host["slug"], name="Cy"),
    ):
        links = await _links_for(smtp[0], "al@example.com", "Cy (Guest)")
        assert "Admit" in links


async def test_without_smtp_the_email_is_a_file_in_the_outbox() -> None:
    # A Valkey of its own: the email schedule is shared by every process on one.
    env = {"FOYER_MAIL_DELAY": "0.2", "FOYER_MAIL_OUTBOX": "true"}
    with valkey_server() as valkey, spawn_foyer(valkey.url, env) as proc:
        host = proc.create_host("Outbox Olive", email="olive@example.com")
        async with GuestClient(proc.ws_url, host["slug"], name="Di"):
            outbox = Path(proc.data_dir) / "outbox"
            for _ in range(100):
                files = sorted(outbox.glob("*olive@example.com.eml")) if outbox.is_dir() else []
                if files:
                    break
                await asyncio.sleep(0.1)
            assert files, "no .eml in the outbox"
        message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
        assert message["To"] == "olive@example.com"
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "Di (Guest)" in text and "/reply/" in text
