"""Camera evidence for a silent alarm, on the wire.

In a duress session the host's response may carry, in private field 63, a request for
snapshots: ``EV=<count>;REF=<alarm id>``. The terminal takes them without anything on
screen changing and, after the session, sends them in 0620 administrative advices, one
JPEG cut into base64 parts: ``EVD=1;REF=<alarm id>;S=<snapshot>;P=<part>;N=<parts>;D=<data>``.
Advices are MACed like every message and go through the store-and-forward queue.
"""

from __future__ import annotations

import base64
import dataclasses

from host_link.errors import CodecError

PART_CHARS = 880  # base64 characters per advice: field 63 holds 999 with the header
MAX_SNAPSHOTS = 4
MAX_PARTS = 64  # at most 64 x 660 bytes (about 42 KB) per snapshot


@dataclasses.dataclass(frozen=True)
class EvidenceRequest:
    count: int
    ref: str


def request_field(count: int, ref: str) -> str:
    return f"EV={count};REF={ref}"


def parse_request(field63: str) -> EvidenceRequest | None:
    """The snapshot request in a response's field 63, if there is one."""
    if not field63.startswith("EV="):
        return None
    items = dict(part.split("=", 1) for part in field63.split(";") if "=" in part)
    try:
        count = int(items["EV"])
        ref = items["REF"]
    except (KeyError, ValueError):
        return None
    if not 1 <= count <= MAX_SNAPSHOTS or not ref or ";" in ref:
        return None
    return EvidenceRequest(count, ref)


def parts(ref: str, snapshot: int, jpeg: bytes) -> list[str]:
    """Field 63 texts carrying one JPEG."""
    text = base64.b64encode(jpeg).decode("ascii")
    chunks = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
    if len(chunks) > MAX_PARTS:
        raise CodecError(
            f"snapshot of {len(jpeg)} bytes needs more than {MAX_PARTS} parts", field="63"
        )
    total = len(chunks)
    return [f"EVD=1;REF={ref};S={snapshot};P={i};N={total};D={c}" for i, c in enumerate(chunks, 1)]


@dataclasses.dataclass(frozen=True)
class EvidencePart:
    ref: str
    snapshot: int
    part: int
    total: int
    data: str  # base64


def parse_part(field63: str) -> EvidencePart:
    """One advice's part; CodecError naming what is wrong."""
    try:
        items = dict(p.split("=", 1) for p in field63.split(";"))
        part = EvidencePart(
            items["REF"], int(items["S"]), int(items["P"]), int(items["N"]), items["D"]
        )
        base64.b64decode(part.data, validate=True)
    except (KeyError, ValueError) as exc:
        raise CodecError(f"evidence advice field 63 malformed: {exc}", field="63") from None
    if items.get("EVD") != "1" or not 1 <= part.part <= part.total <= MAX_PARTS:
        raise CodecError("evidence advice field 63 out of range", field="63")
    if not 0 <= part.snapshot < MAX_SNAPSHOTS:
        raise CodecError("evidence snapshot index out of range", field="63")
    return part
