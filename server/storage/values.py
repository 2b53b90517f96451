"""How values are written to and read from Redis: times, msgpack, text."""

from __future__ import annotations

import time
from typing import Any

import msgpack


def now_ms() -> int:
    return int(time.time() * 1000)


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(raw: bytes | str) -> Any:
    return msgpack.unpackb(raw, raw=False)


def text(value: Any) -> str:
    """A reply as ``str`` ("" for nil)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
