"""Answer To Reset parsing (ISO/IEC 7816-3 section 8), for diagnostics and sanity checks.

Why: the ATR is the first thing a field engineer asks about ("does the chip answer at
all, which protocol, what does it say about itself?"), and a malformed one is a reason
to refuse the card before sending it any command. The parser is strict like the TLV one:
it raises :class:`AtrError` with the offset instead of guessing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from atm_common.errors import RemoteProtocolError

CONVENTIONS = {0x3B: "direct", 0x3F: "inverse"}
MAX_ATR_BYTES = 33  # ISO 7816-3: TS plus at most 32 characters


class AtrError(RemoteProtocolError):
    """Malformed ATR; ``offset`` is where parsing stopped."""

    def __init__(self, message: str, offset: int) -> None:
        self.offset = offset
        super().__init__(f"ATR: {message} at offset {offset}")


@dataclasses.dataclass(frozen=True)
class Atr:
    raw: bytes
    convention: str  # "direct" (TS 3B) or "inverse" (TS 3F)
    t0: int
    interface: dict[str, int]  # "TA1" -> value, in order of appearance
    protocols: tuple[int, ...]  # T=0, T=1 ... offered; T=0 when no TD1
    historical: bytes
    tck: int | None  # present when any protocol other than T=0 is offered

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view for ``atm diag``."""
        return {
            "atr": self.raw.hex(" ").upper(),
            "convention": self.convention,
            "protocols": [f"T={t}" for t in self.protocols],
            "interface_bytes": {k: f"{v:02X}" for k, v in self.interface.items()},
            "historical_bytes": self.historical.hex(" ").upper(),
            "historical_text": "".join(chr(b) if 32 <= b < 127 else "." for b in self.historical),
            "tck": None if self.tck is None else f"{self.tck:02X}",
        }


def parse_atr(raw: bytes) -> Atr:
    """Decode TS, T0, the interface bytes chain, historical bytes and the TCK check."""
    raw = bytes(raw)
    if len(raw) < 2:
        raise AtrError("shorter than TS and T0", len(raw))
    if len(raw) > MAX_ATR_BYTES:
        raise AtrError(f"longer than {MAX_ATR_BYTES} bytes", MAX_ATR_BYTES)
    if raw[0] not in CONVENTIONS:
        raise AtrError(f"TS {raw[0]:02X} is neither 3B nor 3F", 0)
    t0 = raw[1]
    k = t0 & 0x0F
    presence = t0 >> 4
    pos = 2
    level = 1
    interface: dict[str, int] = {}
    protocols: list[int] = []
    while True:
        td: int | None = None
        for bit, name in ((0x1, "TA"), (0x2, "TB"), (0x4, "TC"), (0x8, "TD")):
            if not presence & bit:
                continue
            if pos >= len(raw):
                raise AtrError(f"{name}{level} missing", pos)
            interface[f"{name}{level}"] = raw[pos]
            if name == "TD":
                td = raw[pos]
            pos += 1
        if td is None:
            break
        if td & 0x0F not in protocols:
            protocols.append(td & 0x0F)
        presence = td >> 4
        level += 1
    if not protocols:
        protocols.append(0)
    if pos + k > len(raw):
        raise AtrError(f"{k} historical bytes announced, {len(raw) - pos} present", pos)
    historical = raw[pos : pos + k]
    pos += k
    tck: int | None = None
    if any(t != 0 for t in protocols):
        if pos >= len(raw):
            raise AtrError("TCK missing", pos)
        tck = raw[pos]
        check = 0
        for byte in raw[1 : pos + 1]:
            check ^= byte
        if check:
            raise AtrError(f"TCK {tck:02X} does not check (XOR {check:02X})", pos)
        pos += 1
    if pos != len(raw):
        raise AtrError(f"{len(raw) - pos} unexpected trailing bytes", pos)
    return Atr(raw, CONVENTIONS[raw[0]], t0, interface, tuple(protocols), historical, tck)
