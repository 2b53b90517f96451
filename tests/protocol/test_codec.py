from __future__ import annotations

import json

import msgpack
import pytest

from protocol.codec import CODECS, JSON, MAX_FRAME, MSGPACK, negotiate
from protocol.errors import BadFrame, FrameTooLarge


@pytest.mark.parametrize("name", [MSGPACK, JSON])
def test_round_trip(name: str) -> None:
    codec = CODECS[name]
    body = {"type": "knock", "name": "Zoë", "options": {"duration": 30}, "ref": 7}
    frame = codec.encode(body)
    assert isinstance(frame, bytes if name == MSGPACK else str)
    assert codec.decode(frame) == body


@pytest.mark.parametrize("frame", [b"\xc1", b"\x93\x01\x02", b"\x01"])
def test_msgpack_garbage_is_bad_frame(frame: bytes) -> None:
    with pytest.raises(BadFrame):
        CODECS[MSGPACK].decode(frame)


@pytest.mark.parametrize("frame", ["{", "[1,2]", "42", '"x"', b"\xff\xfe"])
def test_json_garbage_is_bad_frame(frame: str | bytes) -> None:
    with pytest.raises(BadFrame):
        CODECS[JSON].decode(frame)


def test_msgpack_text_frame_is_bad_frame() -> None:
    with pytest.raises(BadFrame):
        CODECS[MSGPACK].decode(json.dumps({"type": "ping"}))


def test_too_large() -> None:
    with pytest.raises(FrameTooLarge):
        CODECS[MSGPACK].decode(msgpack.packb({"x": "a" * MAX_FRAME}))


def test_json_size_counts_utf8_bytes_not_characters() -> None:
    """A text frame of 40 000 characters is 80 000 bytes of UTF-8 on the wire."""
    frame = json.dumps({"x": "é" * 40_000}, ensure_ascii=False)
    assert len(frame) < MAX_FRAME < len(frame.encode())
    with pytest.raises(FrameTooLarge):
        CODECS[JSON].decode(frame)


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_json_frame_of_exactly_max_bytes_passes(char: str) -> None:
    head = '{"x":"'
    room = MAX_FRAME - len(head.encode()) - 2
    body = char * (room // len(char.encode())) + "a" * (room % len(char.encode()))
    frame = head + body + '"}'
    assert len(frame.encode()) == MAX_FRAME
    assert CODECS[JSON].decode(frame) == {"x": body}
    with pytest.raises(FrameTooLarge):
        CODECS[JSON].decode(head + body + 'a"}')


def test_negotiation() -> None:
    assert negotiate([]) == JSON
    assert negotiate(["foyer.v1.msgpack"]) == MSGPACK
    assert negotiate(["chat", "foyer.v1.json"]) == JSON
    assert negotiate(["chat"]) is None
