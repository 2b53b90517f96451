"""Browser pages: the guest page, the host console and their static files.

The pages are HTML templates filled here with the visitor's language
(``server/i18n.py``) and, on the guest page, the host's name (its title
and Open Graph tags: a link pasted into a chat unfurls as "Meet with ...");
everything filled in is HTML-escaped. Live state is fetched by the page's
script from the JSON API (``GET /api/links/{slug}``) and the WebSocket
endpoints, so a page never holds state the store does not. The scripts live in
``clients/browser/`` (the browser client is a client like any other) and
are served from ``/static/`` at stable URLs; ``foyer.js`` and
``foyer-widget.js`` are public and carry CORS headers so another origin can
load the ``<foyer-knock>`` widget as a module.
"""

from __future__ import annotations

import html
import io
import json
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import segno
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from protocol.errors import UnknownLink
from protocol.links import TITLE_STRIP, clean_title, sanitise_options
from server import i18n
from server.browser_files import BROWSER_DIR
from server.storage.hosts import HostRecord
from server.web.context import web

_HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = _HERE / "templates"

# name -> media type; nothing outside this list is served.
STATIC_FILES: dict[str, str] = {
    "foyer.js": "text/javascript; charset=utf-8",
    "foyer-widget.js": "text/javascript; charset=utf-8",
    "guest.js": "text/javascript; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console-link.js": "text/javascript; charset=utf-8",
    "console-calendars.js": "text/javascript; charset=utf-8",
    "console-api.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "foyer.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    **{f"i18n.{lang}.json": "application/json" for lang in i18n.LANGUAGES},
}
# Loadable from any origin (the widget and its client module).
PUBLIC_FILES = frozenset({"foyer.js", "foyer-widget.js", "i18n.js", "favicon.svg"})

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
_LOCALES = {"en": "en_US", "fr": "fr_FR", "de": "de_DE", "es": "es_ES"}
# ``{t:key}``: a catalogue string; ``{name}``: a value; one pass, so nothing a
# value holds (a host named "{slug}") is ever substituted again.
_FIELD = re.compile(r"\{(t:[a-z_.]+|[a-z_]+)\}")


@lru_cache(maxsize=8)
def template(name: str) -> str:
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def render(
    name: str, lang: str, values: dict[str, str], markup: dict[str, str] | None = None
) -> str:
    """A template with its catalogue strings and values filled in, every one
    HTML-escaped (``values`` are raw: host names are user input), in one pass
    (a value that reads like a field stays text). ``markup``: fields filled with
    HTML the caller built and escaped itself."""
    built = markup or {}

    def fill(match: re.Match[str]) -> str:
        field = match.group(1)
        if field == "catalogue":  # inside <script type="application/json">: no "<"
            return _script_json(i18n.messages(lang))
        if field in built:
            return built[field]
        if field.startswith("t:"):
            text = i18n.t(lang, field[2:], values)
        elif field in values:
            text = values[field]
        else:
            return match.group(0)
        return html.escape(text, quote=True)

    return _FIELD.sub(fill, template(name))


def _script_json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text


def page_headers(*, frameable: bool) -> dict[str, str]:
    csp = _PAGE_CSP + ("" if frameable else "; frame-ancestors 'none'")
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": csp, "Cache-Control": "no-store"}
    headers["Vary"] = "Accept-Language"
    if not frameable:
        headers["X-Frame-Options"] = "DENY"
    return headers


def language(request: Request) -> str:
    return i18n.choose(request.query_params.get("lang"), request.headers.get("accept-language"))


def _base_url(request: Request) -> str:
    return (web(request).public_url or str(request.base_url)).rstrip("/")


def _link_page(lang: str, slug: str, *, retired: bool) -> HTMLResponse:
    """The friendly page of a link that leads nowhere: unknown (404) or retired
    by its host (410); it unfurls as such in a chat too."""
    kind = "retired" if retired else "unknown"
    values = {
        "lang": lang,
        "outcome": f"{kind}_link",
        "heading": i18n.t(lang, f"guest.{kind}_heading"),
        "lead": i18n.t(lang, "guest.retired" if retired else "guest.unknown_slug", {"slug": slug}),
    }
    body = render("unknown.html", lang, values)
    status = 410 if retired else 404
    return HTMLResponse(body, status_code=status, headers=page_headers(frameable=True))


async def _resolve(request: Request, slug: str) -> tuple[HostRecord | None, bool]:
    """(the host behind ``slug`` or None when unknown, whether ``slug`` is retired)."""
    if not _SLUG_SHAPE.match(slug):
        return None, False
    context = web(request)
    try:
        host = await context.directory.host_for_slug(slug)
    except UnknownLink:
        return None, False
    record = await context.hosts.get_host(host)  # fresh: the slug may have just changed
    if record is None:
        return None, False
    return record, slug.lower() in record["retired"]


async def guest_page(request: Request) -> Response:
    """``GET /l/{slug}``: the knock form, titled with the host's name (the link
    unfurls as "Meet with ..." in a chat), in the visitor's language."""
    slug = str(request.path_params["slug"])
    lang = language(request)
    record, retired = await _resolve(request, slug)
    if record is None or retired:
        return _link_page(lang, slug, retired=retired)
    if record["slug"] != slug:  # an old slug of this host: send to the current one
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/l/{record['slug']}{query}", status_code=301)
    values = {
        "lang": lang,
        "locale": _LOCALES[lang],
        "slug": slug,
        "host": record["name"],
        "url": f"{_base_url(request)}/l/{slug}",
        # The title as the knock will keep it, so the guest reads what the host does.
        "topic": clean_title(request.query_params.get("title", "")),
    }
    return HTMLResponse(render("guest.html", lang, values), headers=page_headers(frameable=True))


@lru_cache(maxsize=512)
def _qr_svg(link: str) -> bytes:
    """The QR code of ``link`` as SVG (segno writes no user text into it)."""
    out = io.BytesIO()
    segno.make(link, error="m", micro=False).save(
        out, kind="svg", scale=4, border=2, dark="#1d1f23", light="#ffffff", xmldecl=False
    )
    return out.getvalue()


async def link_qr(request: Request) -> Response:
    """``GET /l/{slug}/qr.svg``: the QR code of the personal link, with the
    link options of the query string (only valid ones: the link builder's)."""
    slug = str(request.path_params["slug"])
    record, retired = await _resolve(request, slug)
    if record is None or retired:
        return _link_page(language(request), slug, retired=retired)
    options, _ = sanitise_options(dict(request.query_params), web(request).regions or ())
    query = "&".join(
        f"{name}={quote(str(value).lower() if isinstance(value, bool) else str(value))}"
        for name, value in options.items()
    )
    link = f"{_base_url(request)}/l/{record['slug']}" + (f"?{query}" if query else "")
    headers = {**_COMMON_HEADERS, "Cache-Control": "public, max-age=300"}
    return Response(_qr_svg(link), media_type="image/svg+xml", headers=headers)


async def host_console(request: Request) -> Response:
    """``GET /host``: the console; the token arrives in the URL fragment."""
    lang = language(request)
    # The link builder shows what a title becomes, by the one rule (protocol.links).
    strip = "".join(sorted(TITLE_STRIP - {" "}))
    body = render("host.html", lang, {"lang": lang, "title_strip": strip})
    return HTMLResponse(body, headers=page_headers(frameable=False))


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
    Route("/l/{slug}/qr.svg", link_qr, methods=["GET", "HEAD"], name="link_qr"),
    Route("/host", host_console, methods=["GET", "HEAD"], name="host_console"),
    Route("/static/{name}", static_file, methods=["GET", "HEAD"], name="static"),
]
