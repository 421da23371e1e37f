"""A small, strict BER-TLV parser and encoder (EMV Book 3 Annex B, ISO/IEC 7816-4).

Why our own: the card is the far side of a wire we do not trust, so every length and tag
is checked against the bytes actually present and anything malformed stops the read with
:class:`TlvError` naming the byte offset, instead of an ``IndexError`` deep in a
dictionary lookup. Tags are ints (``0x5F24``), which keeps lookups cheap and readable.

Accepted: one- to four-byte tags, short and long-form (up to four length bytes) lengths,
constructed templates (parsed recursively), and ``00`` padding between objects (EMV lets
erased objects leave it). Refused: truncated tags or lengths, values running past the
data, the indefinite length ``80``, tags longer than four bytes, nesting deeper than
:data:`MAX_DEPTH`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

from atm_common.errors import RemoteProtocolError

MAX_DEPTH = 16
MAX_TAG_BYTES = 4
MAX_LENGTH_BYTES = 4


class TlvError(RemoteProtocolError):
    """Malformed BER-TLV from the card; ``offset`` is where parsing stopped."""

    def __init__(self, message: str, offset: int) -> None:
        self.offset = offset
        super().__init__(f"{message} at offset {offset}")


def is_constructed(tag: int) -> bool:
    """Bit 6 of a tag's first byte marks a template whose value is more TLV."""
    first = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")[0]
    return bool(first & 0x20)


@dataclasses.dataclass(frozen=True)
class Tlv:
    """One data object. ``children`` is set (possibly empty) exactly for templates."""

    tag: int
    value: bytes
    children: tuple[Tlv, ...] | None = None
    offset: int = dataclasses.field(default=0, compare=False)

    @property
    def constructed(self) -> bool:
        return self.children is not None

    def find(self, *path: int) -> Tlv | None:
        """The object reached by following ``path`` (child tags) down from here."""
        return find(self.children or (), *path)

    def encode(self) -> bytes:
        return encode(self.tag, self.value if self.children is None else self.children)


def parse_tag(data: bytes, pos: int, end: int | None = None) -> tuple[int, int]:
    """Read a tag at ``pos`` (not past ``end``); return it and the position after it."""
    end = len(data) if end is None else end
    if pos >= end:
        raise TlvError("tag expected, data ended", pos)
    start = pos
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # more tag bytes follow while bit 8 is set
        while True:
            if pos >= end:
                raise TlvError("truncated multi-byte tag", start)
            if pos - start >= MAX_TAG_BYTES:
                raise TlvError(f"tag longer than {MAX_TAG_BYTES} bytes", start)
            byte = data[pos]
            tag = (tag << 8) | byte
            pos += 1
            if not byte & 0x80:
                break
    return tag, pos


def parse_length(data: bytes, pos: int, end: int | None = None) -> tuple[int, int]:
    """Read a length at ``pos`` (not past ``end``); return it and the position after it."""
    end = len(data) if end is None else end
    if pos >= end:
        raise TlvError("length expected, data ended", pos)
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if first == 0x80:
        raise TlvError("indefinite length is not allowed", pos)
    count = first & 0x7F
    if count > MAX_LENGTH_BYTES:
        raise TlvError(f"length field of {count} bytes is too long", pos)
    if pos + 1 + count > end:
        raise TlvError("truncated length field", pos)
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def _parse(data: bytes, start: int, end: int, depth: int) -> list[Tlv]:
    if depth > MAX_DEPTH:
        raise TlvError(f"templates nested deeper than {MAX_DEPTH}", start)
    objects: list[Tlv] = []
    pos = start
    while pos < end:
        if data[pos] == 0x00:  # padding between objects
            pos += 1
            continue
        here = pos
        tag, pos = parse_tag(data, pos, end)
        length, pos = parse_length(data, pos, end)
        if pos + length > end:
            raise TlvError(
                f"tag {tag:02X} length {length} runs past the data ({end - pos} bytes left)", here
            )
        value = data[pos : pos + length]
        children = None
        if is_constructed(tag):
            children = tuple(_parse(data, pos, pos + length, depth + 1))
        objects.append(Tlv(tag, value, children, here))
        pos += length
    return objects


def parse(data: bytes) -> list[Tlv]:
    """Parse a sequence of data objects; raise :class:`TlvError` on anything malformed."""
    return _parse(bytes(data), 0, len(data), 0)


def encode_tag(tag: int) -> bytes:
    if tag <= 0:
        raise ValueError(f"invalid tag {tag}")
    return tag.to_bytes((tag.bit_length() + 7) // 8, "big")


def encode_length(length: int) -> bytes:
    """Shortest form: one byte below 128, else ``8n`` plus n big-endian bytes."""
    if length < 0:
        raise ValueError("negative length")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > MAX_LENGTH_BYTES:
        raise ValueError(f"length {length} does not fit {MAX_LENGTH_BYTES} bytes")
    return bytes([0x80 | len(body)]) + body


def encode(tag: int, value: bytes | Iterable[Tlv]) -> bytes:
    """Encode one object; a template's value may be given as its children."""
    body = value if isinstance(value, bytes | bytearray) else b"".join(c.encode() for c in value)
    return encode_tag(tag) + encode_length(len(body)) + bytes(body)


def walk(objects: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object, depth first, templates before their contents."""
    for obj in objects:
        yield obj
        if obj.children:
            yield from walk(obj.children)


def find(objects: Sequence[Tlv], *path: int) -> Tlv | None:
    """The object at ``path``: ``find(fci, 0x6F, 0xA5, 0x88)``, ``find(records, 0x5A)``.

    The first tag is searched at every depth (first match, depth first), because EMV
    objects such as ``5A`` may sit in any record template; each further tag must be a
    direct child of the previous one.
    """
    if not path:
        return None
    found = next((obj for obj in walk(objects) if obj.tag == path[0]), None)
    for tag in path[1:]:
        if found is None:
            return None
        found = next((obj for obj in found.children or () if obj.tag == tag), None)
    return found


def parse_dol(data: bytes) -> list[tuple[int, int]]:
    """A data object list (PDOL, CDOL): tag and length pairs with no values."""
    entries: list[tuple[int, int]] = []
    pos = 0
    while pos < len(data):
        tag, pos = parse_tag(data, pos)
        length, pos = parse_length(data, pos)
        entries.append((tag, length))
    return entries
