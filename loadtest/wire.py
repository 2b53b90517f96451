"""The two wire codecs of PROTOCOL.md, as plain dicts, for the driver and the floor relay.

The harness does not use ``protocol.codec``: the floor must not share code with the
server it is the floor for, and the driver wants the cheapest decode there is (a dict,
not a validated dataclass) so that its own overhead stays small next to the server's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack

SUBPROTOCOLS = {"msgpack": "foyer.v1.msgpack", "json": "foyer.v1.json"}

Frame = dict[str, Any]

_packer = msgpack.Packer()
_json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_msgpack(message: Frame) -> bytes:
    data: bytes = _packer.pack(message)
    return data


def decode_msgpack(data: bytes | str) -> Frame:
    if isinstance(data, str):
        data = data.encode()
    value: Frame = msgpack.unpackb(data, raw=False)
    return value


def encode_json(message: Frame) -> str:
    return _json_encoder.encode(message)


def decode_json(data: bytes | str) -> Frame:
    value: Frame = json.loads(data)
    return value


def encoder(codec: str) -> Callable[[Frame], bytes | str]:
    """The encoder for ``codec`` ("msgpack" or "json")."""
    return encode_msgpack if codec == "msgpack" else encode_json


def decoder(codec: str) -> Callable[[bytes | str], Frame]:
    """The decoder for ``codec`` ("msgpack" or "json")."""
    return decode_msgpack if codec == "msgpack" else decode_json


def codec_of(subprotocol: str | None) -> str:
    """The codec a negotiated subprotocol means; no subprotocol means JSON (PROTOCOL.md)."""
    return "msgpack" if subprotocol == SUBPROTOCOLS["msgpack"] else "json"
