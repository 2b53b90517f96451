"""The API is described in /openapi.json, and schemathesis finds no 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import FoyerProcess

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def test_document_lists_every_endpoint(foyer: FoyerProcess) -> None:
    doc = httpx.get(f"{foyer.http_url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/hosts",
        "/api/hosts/{host}",
        "/api/hosts/{host}/token",
        "/api/hosts/{host}/slug",
        "/api/hosts/{host}/slug-check",
        "/api/hosts/{host}/settings",
        "/api/hosts/{host}/sessions",
        "/api/hosts/{host}/waiting",
        "/api/hosts/{host}/guests/{guest}/reply",
        "/api/guest-tokens",
        "/api/links/{slug}",
        "/api/i18n",
        "/l/{slug}/qr.svg",
        "/healthz",
        "/api/meetings",
        "/api/meetings/{meeting}",
        "/api/workspaces/{ws}/users/{user}/connection",
        "/api/workspaces/{ws}/bookings",
        "/api/workspaces/{ws}/bookings/{booking}",
        "/api/workspaces/{ws}/bookings/{booking}/cancel",
        "/api/workspaces/{ws}/bookings/{booking}.ics",
        "/api/hosts/{host}/calendar-feed",
        "/api/hosts/{host}/calendar.ics",
        "/api/calendar/rewrite",
    }
    page = httpx.get(f"{foyer.http_url}/api/docs")
    assert page.status_code == 200 and "/api/hosts/{host}/slug" in page.text


def test_schemathesis_finds_no_server_errors(foyer: FoyerProcess) -> None:
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{foyer.http_url}/openapi.json",
            "-H",
            f"Authorization: Bearer {foyer.api_key}",
            "--checks",
            "not_a_server_error",
            "-n",
            "40",
            "--seed",
            "20261121",
            "--request-timeout",
            "15",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
