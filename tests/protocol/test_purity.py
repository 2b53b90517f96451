"""protocol/ is pure: importing all of it pulls in no I/O library."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("asyncio", "starlette", "redis", "socket", "websockets", "uvicorn")


def test_protocol_imports_no_io() -> None:
    code = (
        "import sys, json\n"
        "import protocol.messages, protocol.codec, protocol.links, protocol.lobby, "
        "protocol.errors\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
