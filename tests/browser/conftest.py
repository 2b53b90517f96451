"""A real browser for the page tests: Debian's Chromium driven by Playwright.

Everything stays on 127.0.0.1: a Foyer process whose meeting URLs point at a
small local site (which also plays the "second origin" that embeds the
widget), and a browser context that aborts any request to another host.
"""

from __future__ import annotations

import fcntl
import html
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, sync_playwright

from tests.support import FoyerProcess, spawn_foyer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 20_000


def ensure_chromium() -> str:
    """Debian's Chromium, installed with apt when missing (CI runs as root).
    The suite's workers (pytest-xdist) take turns: one installs, the others
    wait on the lock and then find it there (apt holds its own lock, and a
    second apt-get would fail on it)."""
    with open(Path(tempfile.gettempdir()) / "foyer-tests-chromium.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _install_chromium()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return CHROMIUM


def _install_chromium() -> None:
    if not Path(CHROMIUM).exists():
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.fail("chromium is missing and apt-get is not available")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            [apt, "update"], check=False, env=env, timeout=600, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            [apt, "install", "-y", "--no-install-recommends", "chromium"],
            check=True,
            env=env,
            timeout=1200,
            stdout=subprocess.DEVNULL,
        )


class LocalSite:
    """A second origin on 127.0.0.1: meeting pages and a widget embed page.

    ``/meet/{id}`` stands in for the meeting platform; ``/embed?server=&link=``
    is a third-party page with the ``<foyer-knock>`` snippet and hostile CSS.
    """

    def __init__(self) -> None:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path.startswith("/meet/"):
                    meeting = html.escape(url.path.removeprefix("/meet/"))
                    body = (
                        f"<!doctype html><title>Meeting {meeting}</title>"
                        f"<h1 id='meeting'>Meeting {meeting}</h1>"
                    )
                elif url.path == "/embed":
                    body = site.embed_page(
                        query.get("server", [""])[0],
                        query.get("link", [""])[0],
                        query.get("options", [""])[0],
                    )
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def embed_page(server: str, link: str, options: str) -> str:
        s, ln, o = (html.escape(v, quote=True) for v in (server, link, options))
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Partner site</title>
<style>
  /* A careless host page: none of this may reach inside the widget. */
  button {{ display: none !important; }}
  input {{ visibility: hidden !important; }}
  * {{ font-family: serif; color: red; }}
</style>
<script type="module" src="{s}/static/foyer-widget.js"></script>
</head><body>
<h1>Acme Corp</h1>
<p>Talk to our team:</p>
<foyer-knock link="{ln}" server="{s}" options="{o}"></foyer-knock>
</body></html>"""

    def __enter__(self) -> LocalSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="package")
def site() -> Iterator[LocalSite]:
    with LocalSite() as local:
        yield local


@pytest.fixture(scope="package")
def foyer_web(redis_url: str, site: LocalSite) -> Iterator[FoyerProcess]:
    """Foyer with meetings on the local site, which is also an allowed origin."""
    env = {
        "FOYER_MEETING_URL": site.origin + "/meet/{meeting_id}",
        "FOYER_ALLOWED_ORIGINS": site.origin,
    }
    with spawn_foyer(redis_url, env) as proc:
        yield proc


@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    chromium = playwright_driver.chromium.launch(
        executable_path=ensure_chromium(), args=CHROMIUM_ARGS, timeout=60_000
    )
    try:
        yield chromium
    finally:
        chromium.close()


def _only_localhost(route: Route) -> None:
    url = urlsplit(route.request.url)
    if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
        route.abort("blockedbyclient")
    else:
        route.continue_()


def new_context(browser: Browser, **kwargs: Any) -> BrowserContext:
    context = browser.new_context(**kwargs)
    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", _only_localhost)
    return context


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = new_context(browser)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page_errors(context: BrowserContext) -> list[str]:
    """Uncaught script errors of every page in the context (should stay empty)."""
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    return errors


def screenshot(page: Page, name: str) -> Path:
    """Keep a picture of the page in test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


def console_url(foyer: FoyerProcess, token: str) -> str:
    return f"{foyer.http_url}/host#token={token}"


def guest_url(foyer: FoyerProcess, slug: str, query: str = "") -> str:
    return f"{foyer.http_url}/l/{slug}" + (f"?{query}" if query else "")
