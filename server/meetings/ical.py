"""iCalendar content lines, read without losing a byte (RFC 5545, 3.1).

A file is read into ``ContentLine``s, each holding the exact bytes it came
from (every physical line of a folded line, with its own CRLF or LF), and
into ``Component``s (BEGIN/END) that point at them. Writing the file back is
joining those bytes; a caller that changes a property replaces that one
line with ``fold(new_text)``. Unfolding happens on bytes before decoding,
so a fold inside a UTF-8 sequence (some exporters do it) is understood; bytes
that are not UTF-8 survive through ``surrogateescape``.

TEXT values keep their escapes (``\\,`` ``\\;`` ``\\n`` ``\\\\``):
``unescape_text`` gives the text and where each character came from, so an
edit can replace one span of the escaped value and leave the rest as written.

Pure: no I/O. May import: ``protocol``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from protocol.errors import InvalidCalendar

FOLD_OCTETS = 75  # RFC 5545, 3.1: lines SHOULD NOT be longer than 75 octets
_PHYSICAL = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r)?")
_NAME = re.compile(r"[A-Za-z0-9-]+")
_PLAIN_PARAM = re.compile(r'[^";:,]*')


@dataclass(frozen=True, slots=True)
class ParamValue:
    """One value of a parameter: its span in ``ContentLine.text``, quotes excluded."""

    start: int
    end: int
    quoted: bool


@dataclass(frozen=True, slots=True)
class Param:
    name: str  # upper case
    values: tuple[ParamValue, ...]


@dataclass(frozen=True, slots=True)
class ContentLine:
    """One logical line: ``raw`` as in the file, ``text`` unfolded and decoded.

    ``name`` is upper case; it is ``""`` for a blank line or one that is not a
    content line (kept as it is, never looked into)."""

    number: int  # 1-based physical line number of its first line, for messages
    raw: bytes
    text: str
    ending: bytes  # the line break of its last physical line (b"" at the end of a file)
    name: str
    params: tuple[Param, ...]
    value_start: int

    @property
    def value(self) -> str:
        return self.text[self.value_start :]

    def param(self, name: str) -> str | None:
        """The first value of parameter ``name``, or ``None``."""
        for param in self.params:
            if param.name == name and param.values:
                first = param.values[0]
                return self.text[first.start : first.end]
        return None


@dataclass(frozen=True, slots=True)
class Component:
    """BEGIN:name ... END:name; ``properties`` are indexes into the document's lines."""

    name: str
    begin: int
    end: int
    properties: tuple[int, ...]
    children: tuple[Component, ...]

    def walk(self, name: str) -> Iterator[Component]:
        for child in self.children:
            if child.name == name:
                yield child
            yield from child.walk(name)


@dataclass(frozen=True, slots=True)
class Document:
    lines: tuple[ContentLine, ...]
    calendars: tuple[Component, ...]  # the top-level VCALENDARs
    newline: bytes  # the file's first line break, used between the parts of a re-folded line

    def prop(self, component: Component, name: str) -> ContentLine | None:
        """The first property ``name`` of ``component`` (not of its children)."""
        for index in component.properties:
            if self.lines[index].name == name:
                return self.lines[index]
        return None

    def props(self, component: Component, name: str) -> Iterator[ContentLine]:
        for index in component.properties:
            if self.lines[index].name == name:
                yield self.lines[index]

    def write(self, replaced: dict[int, bytes]) -> bytes:
        """The file again, with the lines at the given indexes replaced."""
        return b"".join(replaced.get(i, line.raw) for i, line in enumerate(self.lines))


def _physical_lines(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(content, line break) of every physical line, in order."""
    for match in _PHYSICAL.finditer(data):
        whole = match.group()
        if not whole:
            continue  # the empty match at the end
        body = whole.rstrip(b"\r\n")
        yield body, whole[len(body) :]


def _parse(text: str) -> tuple[str, tuple[Param, ...], int]:
    """``name *(";" param) ":" value``; ``("", (), 0)`` when ``text`` is not a content line."""
    match = _NAME.match(text)
    if match is None:
        return "", (), 0
    i = match.end()
    params: list[Param] = []
    while i < len(text) and text[i] == ";":
        pname = _NAME.match(text, i + 1)
        if pname is None or pname.end() >= len(text) or text[pname.end()] != "=":
            return "", (), 0
        i = pname.end() + 1
        values: list[ParamValue] = []
        while True:
            if i < len(text) and text[i] == '"':
                close = text.find('"', i + 1)
                if close < 0:
                    return "", (), 0
                values.append(ParamValue(i + 1, close, True))
                i = close + 1
            else:
                plain = _PLAIN_PARAM.match(text, i)
                assert plain is not None  # the pattern matches the empty string
                values.append(ParamValue(i, plain.end(), False))
                i = plain.end()
            if i < len(text) and text[i] == ",":
                i += 1
                continue
            break
        params.append(Param(pname.group().upper(), tuple(values)))
    if i >= len(text) or text[i] != ":":
        return "", (), 0
    return match.group().upper(), tuple(params), i + 1


def _content_lines(data: bytes) -> Iterator[ContentLine]:
    raw: list[bytes] = []
    unfolded: list[bytes] = []
    ending = b""
    start = 0
    for physical, (body, brk) in enumerate(_physical_lines(data), 1):
        if raw and body[:1] in (b" ", b"\t"):
            raw.append(body + brk)
            unfolded.append(body[1:])
            ending = brk
            continue
        if raw:
            yield _line(start, raw, unfolded, ending)
        raw, unfolded, ending, start = [body + brk], [body], brk, physical
    if raw:
        yield _line(start, raw, unfolded, ending)


def _line(number: int, raw: list[bytes], unfolded: list[bytes], ending: bytes) -> ContentLine:
    text = b"".join(unfolded).decode("utf-8", "surrogateescape")
    if number == 1:
        text = text.removeprefix("\ufeff")  # a byte order mark (some Outlook exports)
    name, params, value_start = _parse(text)
    return ContentLine(number, b"".join(raw), text, ending, name, params, value_start)


@dataclass(slots=True)
class _Open:
    name: str
    begin: int
    properties: list[int]
    children: list[Component]


def read(data: bytes) -> Document:
    """The file as content lines and components; ``InvalidCalendar`` when it
    is not iCalendar (no VCALENDAR, unbalanced BEGIN/END, stray lines)."""
    lines = tuple(_content_lines(data))
    calendars: list[Component] = []
    stack: list[_Open] = []
    for index, line in enumerate(lines):
        if not line.text.strip():
            continue
        if line.name == "BEGIN":
            name = line.value.strip().upper()
            if not stack and name != "VCALENDAR":
                raise InvalidCalendar(
                    f"line {line.number}: the file must begin with BEGIN:VCALENDAR"
                )
            stack.append(_Open(name, index, [], []))
        elif line.name == "END":
            name = line.value.strip().upper()
            if not stack or stack[-1].name != name:
                opened = f"BEGIN:{stack[-1].name}" if stack else "nothing"
                raise InvalidCalendar(f"line {line.number}: END:{name} does not close {opened}")
            done = stack.pop()
            component = Component(
                done.name, done.begin, index, tuple(done.properties), tuple(done.children)
            )
            (stack[-1].children if stack else calendars).append(component)
        elif not stack:
            raise InvalidCalendar(
                f"line {line.number}: not iCalendar (expected BEGIN:VCALENDAR)"
                if not calendars
                else f"line {line.number}: text after END:VCALENDAR"
            )
        else:
            stack[-1].properties.append(index)
    if stack:
        raise InvalidCalendar(f"BEGIN:{stack[-1].name} is never closed (END:{stack[-1].name})")
    if not calendars:
        raise InvalidCalendar("not iCalendar: no BEGIN:VCALENDAR")
    newline = next((line.ending for line in lines if line.ending), b"\r\n")
    return Document(lines, tuple(calendars), newline)


def fold(text: str, ending: bytes, newline: bytes = b"\r\n") -> bytes:
    """``text`` as physical lines of at most 75 octets, never splitting a UTF-8
    character; continuation lines begin with a space (RFC 5545, 3.1)."""
    data = text.encode("utf-8", "surrogateescape")
    parts: list[bytes] = []
    start, limit = 0, FOLD_OCTETS
    while len(data) - start > limit:
        cut = start + limit
        while cut > start + 1 and (data[cut] & 0xC0) == 0x80:
            cut -= 1  # a continuation byte: cut before the character it belongs to
        parts.append(data[start:cut])
        start, limit = cut, FOLD_OCTETS - 1  # the leading space counts
    parts.append(data[start:])
    return (newline + b" ").join(parts) + ending


def unescape_text(value: str) -> tuple[str, list[int]]:
    """A TEXT value unescaped (RFC 5545, 3.3.11), and for each character of the
    result where it begins in ``value`` (one more entry: ``len(value)``)."""
    out: list[str] = []
    where: list[int] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            escaped = value[i + 1]
            out.append("\n" if escaped in "nN" else escaped)
            where.append(i)
            i += 2
        else:
            out.append(char)
            where.append(i)
            i += 1
    where.append(len(value))
    return "".join(out), where


def escape_text(text: str) -> str:
    """``text`` as a TEXT value (RFC 5545, 3.3.11)."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )
