"""RFC 6455 framing on the server's side, sans I/O: client frames in, whole
messages and control frames out; server frames built as bytes.

Why not websockets' ``ServerProtocol`` (issue 11): a lobby socket lives for
one knock and one outcome, and that class cost more per visit than the
frames it parsed (a ``uuid4`` per socket, a generator-based reader, a
``Frame`` object and an events list per frame). This reader checks what that
one did for an open connection without extensions (RFC 6455 5.1-5.5): client
frames masked, reserved bits clear, known opcodes, control frames final and
at most 125 bytes, continuation in order, close codes and reasons valid, and
the ``max_size`` of a message (checked from a frame's header, before its
payload is buffered). Unmasking is websockets' own C ``apply_mask``.

A violation raises ``FrameError`` with the close code to send; frames
complete before it in the same read were already appended, in order.
"""

from __future__ import annotations

import struct

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets ships the C extension for CPython
    from websockets.utils import apply_mask

# Opcodes (RFC 6455 5.2), as this reader reports them.
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
NO_STATUS = 1005  # a close frame without a code (never sent, RFC 6455 7.4.1)
# Codes a peer may send (websockets' EXTERNAL_CLOSE_CODES), and 3000-4999.
PEER_CLOSE_CODES = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)

_FIN = 0x80
_MASK = 0x80
_RESERVED = 0x70
_unpack_16 = struct.Struct("!H").unpack_from
_unpack_64 = struct.Struct("!Q").unpack_from
_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
_pack_code = struct.Struct("!H").pack

Event = tuple[int, bytes]  # (TEXT | BINARY | CLOSE | PING | PONG, payload)


class FrameError(Exception):
    """The peer broke RFC 6455: close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameReader:
    """Reads client frames from a byte stream. ``feed`` appends each whole
    message (fragments joined) and each control frame to ``out`` in order."""

    __slots__ = ("_chunks", "_have", "_max_size", "_need", "_parts", "_parts_opcode", "_parts_size")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._chunks: list[bytes] = []  # an incomplete frame, read so far
        self._have = 0  # ... its bytes
        self._need = 0  # ... and how many bytes it needs before it is worth parsing again
        self._parts: list[bytes] | None = None  # a fragmented message being read
        self._parts_opcode = 0
        self._parts_size = 0

    def feed(self, data: bytes, out: list[Event]) -> None:
        if self._chunks:  # joined once the frame may be whole: linear in its size
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks, self._have = [], 0
        buffer = data
        end = len(buffer)
        pos = 0
        need = 2  # bytes the next frame needs at least
        try:
            while end - pos >= 2:
                first, second = buffer[pos], buffer[pos + 1]
                if first & _RESERVED:
                    raise FrameError(PROTOCOL_ERROR, "reserved bits must be 0")
                if not second & _MASK:
                    raise FrameError(PROTOCOL_ERROR, "incorrect masking")
                opcode = first & 0x0F
                size = second & 0x7F
                start = pos + 6  # the payload's start: header, then the 4-byte mask
                if size == 126:
                    if end - pos < 4:
                        need = 4
                        break
                    size = _unpack_16(buffer, pos + 2)[0]
                    start += 2
                elif size == 127:
                    if end - pos < 10:
                        need = 10
                        break
                    size = _unpack_64(buffer, pos + 2)[0]
                    start += 8
                self._check(opcode, bool(first & _FIN), size)
                if end < start + size:
                    need = start + size - pos
                    break
                payload = buffer[start : start + size]
                if size:
                    payload = apply_mask(payload, buffer[start - 4 : start])
                pos = start + size
                self._frame(opcode, bool(first & _FIN), payload, out)
        finally:
            if pos < end:
                rest = buffer[pos:]
                self._chunks, self._have, self._need = [rest], len(rest), need

    def _check(self, opcode: int, fin: bool, size: int) -> None:
        """What a frame's header alone can break."""
        if opcode >= CLOSE:
            if opcode > PONG:
                raise FrameError(PROTOCOL_ERROR, f"invalid opcode: {opcode}")
            if not fin:
                raise FrameError(PROTOCOL_ERROR, "fragmented control frame")
            if size > 125:
                raise FrameError(PROTOCOL_ERROR, "control frame too long")
            return
        if opcode > BINARY:
            raise FrameError(PROTOCOL_ERROR, f"invalid opcode: {opcode}")
        if opcode == CONT:
            if self._parts is None:
                raise FrameError(PROTOCOL_ERROR, "unexpected continuation frame")
            size += self._parts_size
        elif self._parts is not None:
            raise FrameError(PROTOCOL_ERROR, "expected a continuation frame")
        if size > self._max_size:
            raise FrameError(MESSAGE_TOO_BIG, f"message over {self._max_size} bytes")

    def _frame(self, opcode: int, fin: bool, payload: bytes, out: list[Event]) -> None:
        if opcode == TEXT or opcode == BINARY:
            if fin:
                out.append((opcode, payload))
            else:
                self._parts, self._parts_opcode, self._parts_size = [payload], opcode, len(payload)
        elif opcode == CONT:
            parts = self._parts
            assert parts is not None  # _check saw to it
            parts.append(payload)
            self._parts_size += len(payload)
            if fin:
                out.append((self._parts_opcode, b"".join(parts)))
                self._parts, self._parts_size = None, 0
        else:
            if opcode == CLOSE:
                close_code(payload)  # raises for a bad one
            out.append((opcode, payload))


def close_code(payload: bytes) -> int:
    """The code of a close frame's payload (1005 when it has none), checked."""
    if not payload:
        return NO_STATUS
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame too short")
    code: int = _unpack_16(payload)[0]
    if code not in PEER_CLOSE_CODES and not 3000 <= code < 5000:
        raise FrameError(PROTOCOL_ERROR, f"invalid close code: {code}")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "invalid UTF-8 in the close reason") from None
    return code


def header(first: int, size: int) -> bytes:
    """A server frame's header: servers never mask, and no extension is spoken."""
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return _pack_16(first, 126, size)
    return _pack_64(first, 127, size)


def control(opcode: int, payload: bytes = b"") -> bytes:
    """A whole control frame (at most 125 bytes of payload)."""
    return bytes((_FIN | opcode, len(payload))) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A whole close frame with ``code`` and a short ``reason``."""
    return control(CLOSE, _pack_code(code) + reason.encode()[:123])
