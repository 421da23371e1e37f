"""Field 54, additional amounts: 20-character blocks of account type, amount type,
currency, sign and 12 digits (ISO 8583:1987)."""

from __future__ import annotations

import enum

from host_link.errors import CodecError


class AmountType(enum.StrEnum):
    LEDGER_BALANCE = "01"
    AVAILABLE_BALANCE = "02"
    WITHDRAWAL_LIMIT = "90"  # private use: the most this session may withdraw


def encode_amounts(amounts: dict[AmountType, int], currency: str, account_type: str = "00") -> str:
    parts = []
    for kind, value in amounts.items():
        sign = "C" if value >= 0 else "D"
        parts.append(f"{account_type}{kind.value}{currency}{sign}{abs(value):012d}")
    return "".join(parts)


def decode_amounts(text: str) -> dict[AmountType, int]:
    """Parse field 54; unknown amount types are skipped, malformed blocks raise CodecError."""
    if len(text) % 20:
        raise CodecError(f"field 54 length {len(text)} is not a multiple of 20", field="54")
    out: dict[AmountType, int] = {}
    for i in range(0, len(text), 20):
        block = text[i : i + 20]
        sign, digits = block[7], block[8:]
        if sign not in "CD" or not (digits.isascii() and digits.isdigit()):
            raise CodecError(f"field 54 block {i // 20} is malformed", field="54", position=i)
        try:
            kind = AmountType(block[2:4])
        except ValueError:
            continue
        out[kind] = int(digits) * (1 if sign == "C" else -1)
    return out
