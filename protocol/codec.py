"""One codec for both subprotocols: ``foyer.v1.msgpack`` and ``foyer.v1.json``.

``decode`` turns a frame into a map (or raises ``BadFrame``/``FrameTooLarge``);
``encode`` turns a map into the frame the subprotocol wants (bytes for
msgpack, str for JSON). Fan-out encodes once per codec, not once per socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from protocol.errors import BadFrame, FrameTooLarge

MAX_FRAME = 64 * 1024
MSGPACK = "foyer.v1.msgpack"
JSON = "foyer.v1.json"
SUBPROTOCOLS = (MSGPACK, JSON)

Frame = bytes | str


class Codec:
    """Encodes and decodes the frames of one subprotocol."""

    __slots__ = ("binary", "name")

    def __init__(self, name: str) -> None:
        if name not in SUBPROTOCOLS:
            raise ValueError(f"unknown subprotocol {name!r}")
        self.name = name
        self.binary = name == MSGPACK

    def encode(self, message: Mapping[str, Any]) -> Frame:
        if self.binary:
            return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)

    def decode(self, frame: Frame) -> dict[str, Any]:
        if _size(frame) > MAX_FRAME:
            raise FrameTooLarge()
        try:
            if self.binary:
                if not isinstance(frame, bytes | bytearray):
                    raise BadFrame("expected a binary frame")
                value = msgpack.unpackb(frame, raw=False, strict_map_key=True)
            else:
                if isinstance(frame, bytes | bytearray):
                    frame = bytes(frame).decode("utf-8")
                value = json.loads(frame)
        except BadFrame:
            raise
        except (
            ValueError,
            TypeError,
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
            RecursionError,
        ):
            raise BadFrame() from None
        if not isinstance(value, dict):
            raise BadFrame("a frame must be a map")
        return value


def _size(frame: Frame) -> int:
    """The frame's size on the wire: a text frame is UTF-8, up to 4 bytes a
    character, so it is encoded only when its length alone cannot settle it."""
    if isinstance(frame, str) and MAX_FRAME // 4 < len(frame) <= MAX_FRAME:
        return len(frame.encode("utf-8", "surrogatepass"))
    return len(frame)


CODECS = {name: Codec(name) for name in SUBPROTOCOLS}


def negotiate(offered: Sequence[str]) -> str | None:
    """Pick the subprotocol: msgpack or json as offered; JSON when none is
    offered; ``None`` (refuse) when only unknown ones are (PROTOCOL.md)."""
    if not offered:
        return JSON
    for name in offered:
        if name in CODECS:
            return name
    return None
