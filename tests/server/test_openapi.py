"""The API is described in /openapi.json, and schemathesis finds no 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from starlette.routing import Route

from server.app import http_routes
from tests.support import FoyerProcess

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def test_document_lists_every_endpoint(foyer: FoyerProcess) -> None:
    doc = httpx.get(f"{foyer.http_url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    api_paths = {
        r.path
        for r in http_routes()
        if isinstance(r, Route) and r.path.startswith(("/api/", "/oauth/", "/.well-known/"))
    }
    documented = set(doc["paths"]) - {"/healthz"}
    assert api_paths - {"/api/docs"} <= documented  # every API route is documented
    routes = {r.path for r in http_routes() if isinstance(r, Route)}
    assert documented <= routes  # and nothing documented is missing (e.g. /l/{slug}/qr.svg)
    for path in (
        "/api/hosts",
        "/api/hosts/{host}/guests/{guest}/reply",
        "/api/webhooks",
        "/api/webhooks/{endpoint}/deliveries/{message}/redeliver",
        "/api/oauth/clients/{client_id}",
        "/oauth/authorize",
        "/oauth/token",
        "/oauth/revoke",
        "/.well-known/oauth-authorization-server",
        "/api/meetings",
        "/api/workspaces/{ws}/bookings",
        "/api/calendar/rewrite",
    ):
        assert path in documented
    for path, ops in doc["paths"].items():  # each route's methods are documented too
        methods = {
            m.lower()
            for r in http_routes()
            if isinstance(r, Route) and r.path == path
            for m in (r.methods or ()) - {"HEAD"}
        }
        assert set(ops) == methods or path == "/healthz", path
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
            "30",  # examples per operation: ~45 s of the suite's 15-minute budget
            "--seed",
            "20261121",
            "--request-timeout",
            "15",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Any endpoint it registered (a public address needs no allow-listing) would
    # make every process on the suite's Redis write outboxes: remove them.
    with foyer.api() as api:
        for endpoint in api.get("/api/webhooks").json()["webhooks"]:
            if not endpoint["deployment"]:
                assert api.delete(f"/api/webhooks/{endpoint['id']}").status_code == 204
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
