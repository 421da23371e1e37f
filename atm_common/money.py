"""Amounts in minor units (cents), and the one way to format them for people.

Money travels and is stored as integer minor units (ISO 8583 field 4 has 12 digits of
them); only the edges that talk to people format it, and they all do it here.
"""

from __future__ import annotations

# ISO 4217 minor-unit exponents of the currencies this project meets; 2 otherwise.
_EXPONENTS = {"JPY": 0, "KRW": 0, "392": 0, "410": 0, "BHD": 3, "KWD": 3, "048": 3, "414": 3}


def exponent(currency: str | None = None) -> int:
    """Decimal places of ``currency`` (alpha or numeric ISO 4217 code); 2 when unknown."""
    return _EXPONENTS.get((currency or "").upper(), 2)


def format_minor(amount: int, currency: str | None = None) -> str:
    """``12345`` -> ``"123.45"``: minor units as a decimal string, exact (no float)."""
    places = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(int(amount)), 10**places)
    return f"{sign}{whole}.{part:0{places}d}" if places else f"{sign}{whole}"
