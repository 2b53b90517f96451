"""The server's frame reader against frames a real client makes (websockets'
sans-I/O ``ClientProtocol`` masks them), fed whole and split at every byte;
every rule of RFC 6455 5.1-5.5 it enforces, with the close code each breach
gets; and the server frames it writes, read back by that client."""

from __future__ import annotations

import struct

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from server.lobby.ws_frames import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    Event,
    FrameError,
    FrameReader,
    close_code,
    close_frame,
    control,
    header,
)


def client() -> ClientProtocol:
    return ClientProtocol(parse_uri("ws://127.0.0.1/"), state=State.OPEN, max_size=None)


def wire(*sends: tuple[str, bytes, bool]) -> bytes:
    """What a client writes for ``(kind, payload, fin)`` sends, in order."""
    proto = client()
    for kind, payload, fin in sends:
        if kind == "text":
            proto.send_text(payload, fin=fin)
        elif kind == "binary":
            proto.send_binary(payload, fin=fin)
        elif kind == "cont":
            proto.send_continuation(payload, fin=fin)
        elif kind == "ping":
            proto.send_ping(payload)
        elif kind == "pong":
            proto.send_pong(payload)
    return b"".join(proto.data_to_send())


def masked(first: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """One client frame built by hand (for what a good client never sends)."""
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def read(data: bytes, max_size: int = 1 << 20, step: int | None = None) -> list[Event]:
    reader, out = FrameReader(max_size), []
    if step is None:
        reader.feed(data, out)
    else:
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step], out)
    return out


def refused(data: bytes, max_size: int = 1 << 20) -> FrameError:
    with pytest.raises(FrameError) as caught:
        read(data, max_size)
    return caught.value


def test_whole_messages_come_out_in_order_unmasked() -> None:
    data = wire(("text", "héllo".encode(), True), ("binary", b"\x00\xff" * 3, True))
    assert read(data) == [(TEXT, "héllo".encode()), (BINARY, b"\x00\xff" * 3)]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_every_length_encoding_reads_whole(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = wire(("binary", payload, True), ("text", b"after", True))
    assert read(data) == [(BINARY, payload), (TEXT, b"after")]
    assert read(data, step=4096) == [(BINARY, payload), (TEXT, b"after")]


def test_a_stream_split_at_every_byte_reads_the_same() -> None:
    data = wire(
        ("text", b"x" * 130, True),
        ("binary", b"part one ", False),
        ("ping", b"p", True),
        ("cont", b"and two", True),
        ("pong", b"", True),
    )
    expected = [(TEXT, b"x" * 130), (PING, b"p"), (BINARY, b"part one and two"), (PONG, b"")]
    assert read(data) == expected
    for step in (1, 2, 3, 7, 64):
        assert read(data, step=step) == expected


def test_a_close_frame_is_reported_with_its_payload() -> None:
    proto = client()
    proto.send_close(1001, "bye")
    data = b"".join(proto.data_to_send())
    assert read(data) == [(CLOSE, struct.pack("!H", 1001) + b"bye")]


def test_frames_before_a_violation_are_already_out() -> None:
    reader, out = FrameReader(1 << 20), []
    with pytest.raises(FrameError):
        reader.feed(wire(("text", b"first", True)) + masked(0x83, b""), out)
    assert out == [(TEXT, b"first")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes((0x81, 5)) + b"hello", 1002),  # not masked
        (masked(0xC1, b"x"), 1002),  # RSV1 without an extension
        (masked(0x83, b""), 1002),  # reserved data opcode
        (masked(0x8B, b""), 1002),  # reserved control opcode
        (masked(0x09, b"p"), 1002),  # fragmented ping
        (masked(0x89, b"p" * 126), 1002),  # control frame over 125 bytes
        (masked(0x80, b"orphan"), 1002),  # continuation with nothing to continue
        (masked(0x01, b"a") + masked(0x81, b"b"), 1002),  # a new message mid-message
    ],
)
def test_each_breach_gets_its_close_code(data: bytes, code: int) -> None:
    assert refused(data).code == code


def test_a_message_over_max_size_is_refused_from_its_header() -> None:
    head = masked(0x82, b"z" * 70_000)[:14]  # header and mask only: no payload yet
    assert refused(head, max_size=65_536).code == 1009


def test_fragments_count_together_against_max_size() -> None:
    data = masked(0x02, b"a" * 40) + masked(0x80, b"b" * 40)
    assert refused(data, max_size=64).code == 1009
    assert read(data, max_size=80) == [(BINARY, b"a" * 40 + b"b" * 40)]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", 1005),
        (struct.pack("!H", 1000), 1000),
        (struct.pack("!H", 1002), 1002),
        (struct.pack("!H", 3000), 3000),
        (struct.pack("!H", 4999) + b"reason", 4999),
    ],
)
def test_good_close_codes_pass(payload: bytes, code: int) -> None:
    assert close_code(payload) == code
    assert read(masked(0x88, payload)) == [(CLOSE, payload)]


@pytest.mark.parametrize(
    ("payload", "breach"),
    [
        (b"\x03", 1002),  # one byte: no code
        (struct.pack("!H", 1005), 1002),  # never sent on the wire
        (struct.pack("!H", 999), 1002),
        (struct.pack("!H", 5000), 1002),
        (struct.pack("!H", 1000) + b"\xff\xfe", 1007),  # reason not UTF-8
    ],
)
def test_bad_close_codes_and_reasons_are_breaches(payload: bytes, breach: int) -> None:
    with pytest.raises(FrameError) as caught:
        close_code(payload)
    assert caught.value.code == breach
    assert refused(masked(0x88, payload)).code == breach


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_are_read_back_by_a_client(size: int) -> None:
    proto = client()
    payload = b"q" * size
    proto.receive_data(header(0x82, size) + payload + control(PING, b"hi") + close_frame(4013))
    frames = [e for e in proto.events_received() if isinstance(e, Frame)]
    assert [f.opcode for f in frames] == [Opcode.BINARY, Opcode.PING, Opcode.CLOSE]
    assert frames[0].data == payload
    assert frames[1].data == b"hi"
    assert Close.parse(frames[2].data).code == 4013
