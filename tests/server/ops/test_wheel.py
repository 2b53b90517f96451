"""A wheel install serves the guest page, the console and the browser files
(issue 12): the browser files live in clients/browser/ and the wheel must
carry them (no copies are committed). Builds the wheel, installs it into a
fresh venv (dependencies from the configured index), runs ``foyer serve`` from
there, outside the source tree, and fetches every page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import ROOT, FoyerProcess

BUILD_TIMEOUT = 300  # seconds; installing the dependencies dominates


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_the_wheel_serves_every_page(tmp_path: Path, redis_url: str) -> None:
    dist = tmp_path / "dist"
    # The project's own build backend (already installed), without isolation:
    # no setuptools download; the build must print no packaging warning.
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        tmp_path,
    )
    assert "Warning" not in built, built
    (wheel,) = dist.glob("foyer-*.whl")

    venv = tmp_path / "venv"
    # A venv without pip of its own, filled by this pip (``--python``), without
    # byte-compiling: 30 s -> 9 s of the suite, and still a fresh venv with the
    # wheel's dependencies from the configured index.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = str(venv / "bin" / "python")
    install = ["install", "--quiet", "--no-compile", "--disable-pip-version-check", str(wheel)]
    _run([sys.executable, "-m", "pip", "--python", python, *install], tmp_path)

    proc = FoyerProcess(redis_url)
    proc.command = str(venv / "bin" / "foyer")
    with proc:
        host = proc.create_host("Wheel Host")
        pages = {
            f"/l/{host['slug']}": "text/html",
            "/host": "text/html",
            "/static/foyer.js": "text/javascript",
            "/static/foyer-widget.js": "text/javascript",
            "/static/guest.js": "text/javascript",
            "/static/console.js": "text/javascript",
            "/static/foyer.css": "text/css",
            "/static/console-link.js": "text/javascript",
            "/static/console-calendars.js": "text/javascript",
            "/static/console-api.js": "text/javascript",
            "/static/i18n.js": "text/javascript",
            "/static/favicon.svg": "image/svg+xml",
            "/static/i18n.fr.json": "application/json",
            f"/l/{host['slug']}/qr.svg": "image/svg+xml",
            "/api/i18n?lang=de": "application/json",
        }
        for path, media in pages.items():
            r = httpx.get(proc.http_url + path, timeout=10)
            assert r.status_code == 200, (path, r.status_code)
            assert r.headers["content-type"].startswith(media), path
            assert r.content, path
        # The catalogues came along: the pages speak German from the wheel too.
        german = httpx.get(f"{proc.http_url}/l/{host['slug']}?lang=de", timeout=10).text
        assert "Treffen mit Wheel Host" in german
        served = httpx.get(proc.http_url + "/static/foyer.js", timeout=10).text
        assert served == (ROOT / "clients" / "browser" / "foyer.js").read_text()
