"""Camera evidence for a silent alarm, on the wire: encrypted, fixed-size, and asked of
normal sessions too, so nothing on the wire tells a duress session from a normal one.

Every 0110 and 0210 answering a card session carries field 63: :data:`RESPONSE_CHARS`
characters of base64, a sealed (AES-GCM, :mod:`atm_common.crypto.data`) plaintext of
:data:`RESPONSE_PLAIN` bytes that only the terminal's PIN pad can open. The plaintext is
``EV=0`` (no snapshots) or ``EV=<count>;REF=<evidence ref>``, zero-padded. The host asks
in duress sessions and, as decoys, in a sample of normal ones; the terminal cannot tell
them apart and need not. It takes the snapshots without anything on screen changing and,
after the session, sends each JPEG in 0620 advices whose field 63 is
:data:`PART_CHARS` characters of base64, a sealed :data:`PART_PLAIN`-byte plaintext:
``EVD=1;REF=<ref>;S=<snapshot>;P=<part>;N=<parts>;L=<bytes>\\n`` + up to
:data:`PART_DATA` bytes of the JPEG, zero-padded. Every response field and every advice
part is therefore the same size whatever it says. Advices are MACed like every message
and go through the store-and-forward queue.

This module is the format only; the keys are the PIN pad's and the host's.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses

from atm_common.crypto.data import OVERHEAD
from host_link.errors import CodecError

MAX_SNAPSHOTS = 4
MAX_REF = 40
RESPONSE_PLAIN = 64
PART_PLAIN = 716  # sealed: 744 bytes, 992 base64 characters (field 63 holds 999)
PART_DATA = 600  # JPEG bytes per advice; the header takes at most 71 more
MAX_PARTS = 72  # at most 72 x 600 bytes (about 42 KB) per snapshot


def _b64_chars(size: int) -> int:
    return 4 * -(-size // 3)


RESPONSE_CHARS = _b64_chars(RESPONSE_PLAIN + OVERHEAD)
PART_CHARS = _b64_chars(PART_PLAIN + OVERHEAD)


@dataclasses.dataclass(frozen=True)
class EvidenceRequest:
    count: int
    ref: str


def _pad(text: bytes, size: int) -> bytes:
    if len(text) > size:
        raise CodecError(f"private data of {len(text)} bytes exceeds {size}", field="63")
    return text + bytes(size - len(text))


def _valid_ref(ref: str) -> bool:
    return (
        bool(ref)
        and len(ref) <= MAX_REF
        and ref.isascii()
        and ref.isprintable()
        and all(c not in ";=\n" for c in ref)
    )


def request_plaintext(count: int = 0, ref: str = "") -> bytes:
    """What a response says about snapshots: none (``count`` 0) or ``count`` under ``ref``."""
    if count == 0:
        return _pad(b"EV=0", RESPONSE_PLAIN)
    if not 1 <= count <= MAX_SNAPSHOTS or not _valid_ref(ref):
        raise CodecError("bad evidence request", field="63")
    return _pad(f"EV={count};REF={ref}".encode("ascii"), RESPONSE_PLAIN)


def parse_request(plaintext: bytes) -> EvidenceRequest | None:
    """The snapshot request in an opened response field 63, if it asks for any."""
    text = plaintext.rstrip(b"\x00").decode("ascii", "replace")
    if not text.startswith("EV="):
        return None
    items = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
    try:
        count = int(items["EV"])
        ref = items.get("REF", "")
    except (KeyError, ValueError):
        return None
    if not 1 <= count <= MAX_SNAPSHOTS or not _valid_ref(ref):
        return None
    return EvidenceRequest(count, ref)


def encode_sealed(sealed: bytes) -> str:
    """Field 63 text of sealed data."""
    return base64.b64encode(sealed).decode("ascii")


def decode_sealed(field63: str, chars: int) -> bytes:
    """Sealed data from field 63 of exactly ``chars`` characters; CodecError otherwise."""
    if len(field63) != chars:
        raise CodecError(f"sealed field 63 is {len(field63)} characters, not {chars}", field="63")
    try:
        return base64.b64decode(field63, validate=True)
    except (binascii.Error, ValueError):
        raise CodecError("sealed field 63 is not base64", field="63") from None


def part_plaintexts(ref: str, snapshot: int, jpeg: bytes) -> list[bytes]:
    """The advice plaintexts carrying one JPEG, each exactly PART_PLAIN bytes."""
    if not _valid_ref(ref) or not 0 <= snapshot < MAX_SNAPSHOTS:
        raise CodecError("bad evidence reference or snapshot index", field="63")
    chunks = [jpeg[i : i + PART_DATA] for i in range(0, len(jpeg), PART_DATA)] or [b""]
    if len(chunks) > MAX_PARTS:
        raise CodecError(
            f"snapshot of {len(jpeg)} bytes needs more than {MAX_PARTS} parts", field="63"
        )
    total = len(chunks)
    return [
        _pad(
            f"EVD=1;REF={ref};S={snapshot};P={i};N={total};L={len(c)}\n".encode("ascii") + c,
            PART_PLAIN,
        )
        for i, c in enumerate(chunks, 1)
    ]


@dataclasses.dataclass(frozen=True)
class EvidencePart:
    ref: str
    snapshot: int
    part: int
    total: int
    data: bytes


def parse_part(plaintext: bytes) -> EvidencePart:
    """One advice's opened part; CodecError naming what is wrong."""
    head, sep, body = plaintext.partition(b"\n")
    try:
        if not sep or len(plaintext) != PART_PLAIN:
            raise ValueError("no header line or wrong size")
        items = dict(p.split("=", 1) for p in head.decode("ascii").split(";"))
        length = int(items["L"])
        if not 0 <= length <= min(PART_DATA, len(body)):
            raise ValueError("data length out of range")
        part = EvidencePart(
            items["REF"], int(items["S"]), int(items["P"]), int(items["N"]), body[:length]
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"evidence advice malformed: {exc}", field="63") from None
    if items.get("EVD") != "1" or not 1 <= part.part <= part.total <= MAX_PARTS:
        raise CodecError("evidence advice out of range", field="63")
    if not 0 <= part.snapshot < MAX_SNAPSHOTS:
        raise CodecError("evidence snapshot index out of range", field="63")
    return part
