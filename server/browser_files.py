"""Where the browser files are (``clients/browser/``), and which are served.

The source tree's copy, else the one a wheel carries as ``server/web/static``
(``pyproject.toml``); the pages, the static route, the catalogues and the
emails read it. A leaf module: any layer may ask where the files are.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _browser_dir() -> Path:
    """Where the browser files are: the source tree, else packaged copies."""
    for candidate in (_HERE.parent / "clients" / "browser", _HERE / "web" / "static"):
        if (candidate / "foyer.js").is_file():
            return candidate
    return _HERE.parent / "clients" / "browser"


BROWSER_DIR = _browser_dir()
