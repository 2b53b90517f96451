"""Where the browser files are (``clients/browser/``), and which are served.

The source tree's copy, else the one a wheel carries as ``server/web/static``
(``pyproject.toml``); the pages, the static route and the catalogues read it.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _browser_dir() -> Path:
    """Where the browser files are: the source tree, else packaged copies."""
    for candidate in (_HERE.parent.parent / "clients" / "browser", _HERE / "static"):
        if (candidate / "foyer.js").is_file():
            return candidate
    return _HERE.parent.parent / "clients" / "browser"


BROWSER_DIR = _browser_dir()
