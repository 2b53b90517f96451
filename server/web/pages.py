"""Browser pages: the guest page, the host console and their static files.

The pages are static HTML: the only server-rendered value is the slug
(HTML-escaped); everything else is fetched by the page's script from the
JSON API (``GET /api/links/{slug}``) and the WebSocket endpoints, so a page
never holds state the store does not. The scripts live in
``clients/browser/`` (the browser client is a client like any other) and
are served from ``/static/`` at stable URLs; ``foyer.js`` and
``foyer-widget.js`` are public and carry CORS headers so another origin can
load the ``<foyer-knock>`` widget as a module.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from protocol.errors import UnknownLink
from server.web.context import web

_HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = _HERE / "templates"


def _browser_dir() -> Path:
    """Where the browser files are: the source tree, else packaged copies."""
    for candidate in (_HERE.parent.parent / "clients" / "browser", _HERE / "static"):
        if (candidate / "foyer.js").is_file():
            return candidate
    return _HERE.parent.parent / "clients" / "browser"


BROWSER_DIR = _browser_dir()

# name -> media type; nothing outside this list is served.
STATIC_FILES: dict[str, str] = {
    "foyer.js": "text/javascript; charset=utf-8",
    "foyer-widget.js": "text/javascript; charset=utf-8",
    "guest.js": "text/javascript; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "foyer.css": "text/css; charset=utf-8",
}
# Loadable from any origin (the widget and its client module).
PUBLIC_FILES = frozenset({"foyer.js", "foyer-widget.js"})

# Any slug the store could hold fits this; anything else is surely unknown.
_SLUG_SHAPE = re.compile(r"^[A-Za-z0-9-]{1,64}$")

_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; object-src 'none'"
)


@lru_cache(maxsize=8)
def template(name: str) -> str:
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def page_headers(*, frameable: bool) -> dict[str, str]:
    csp = _PAGE_CSP + ("" if frameable else "; frame-ancestors 'none'")
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": csp, "Cache-Control": "no-store"}
    if not frameable:
        headers["X-Frame-Options"] = "DENY"
    return headers


def _unknown_link_page(slug: str) -> HTMLResponse:
    body = template("unknown.html").replace("{slug}", html.escape(slug, quote=True))
    return HTMLResponse(body, status_code=404, headers=page_headers(frameable=True))


async def guest_page(request: Request) -> Response:
    """``GET /l/{slug}``: the knock form; the script fetches who the host is."""
    slug = str(request.path_params["slug"])
    if not _SLUG_SHAPE.match(slug):
        return _unknown_link_page(slug)
    context = web(request)
    try:
        host = await context.directory.host_for_slug(slug)
    except UnknownLink:
        return _unknown_link_page(slug)
    record = await context.hosts.get_host(host)  # fresh: the slug may have just changed
    if record is None:
        return _unknown_link_page(slug)
    if record["slug"] != slug:  # an old slug of this host: send to the current one
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/l/{record['slug']}{query}", status_code=301)
    body = template("guest.html").replace("{slug}", html.escape(slug, quote=True))
    return HTMLResponse(body, headers=page_headers(frameable=True))


async def host_console(request: Request) -> Response:
    """``GET /host``: the console; the token arrives in the URL fragment."""
    return HTMLResponse(template("host.html"), headers=page_headers(frameable=False))


async def static_file(request: Request) -> Response:
    """``GET /static/{name}``: one of the browser files, revalidated each load."""
    name = str(request.path_params["name"])
    media_type = STATIC_FILES.get(name)
    path = BROWSER_DIR / name
    if media_type is None or not path.is_file():
        return Response("not found\n", status_code=404, media_type="text/plain")
    headers = {**_COMMON_HEADERS, "Cache-Control": "no-cache"}
    if name in PUBLIC_FILES:
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return FileResponse(path, media_type=media_type, headers=headers)


routes: list[BaseRoute] = [
    Route("/l/{slug}", guest_page, methods=["GET", "HEAD"], name="guest_page"),
    Route("/host", host_console, methods=["GET", "HEAD"], name="host_console"),
    Route("/static/{name}", static_file, methods=["GET", "HEAD"], name="static"),
]
