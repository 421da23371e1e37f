"""Cardless withdrawal on the wire: field 63 and the reservation code's "PAN".

Shared by the ATM (which builds the requests) and the host (which reads them), so the
two ends cannot drift apart. The contract (see ``docs/cardless.md``):

* Field 63 (LLLVAR) is ``CL=1;PH=<phone digits, 8-15>;M=<code|face|both>``, plus
  ``;FT=<FaceTemplate.to_text()>`` when the ATM verified a face.
* When the method includes the code, the customer types the reservation code on the PIN
  pad as if it were a PIN. A PIN block needs a PAN, and a cardless customer has none, so
  the block is built with :func:`cardless_pan`: the phone's digits left-padded with
  zeros to 16. The host verifies it like a card PIN, against an IBM 3624 offset.
"""

from __future__ import annotations

from host_link.errors import CodecError

MODES = ("code", "face", "both")
PHONE_MIN_DIGITS, PHONE_MAX_DIGITS = 8, 15  # E.164 allows at most 15


def phone_digits(phone: str) -> str:
    """The phone number as bare digits: ``"+49 151-0000006"`` -> ``"491510000006"``.

    Why: the seed, the phone app and the ATM may write a number differently; every
    lookup and every PIN block uses this one form. ValueError unless 8-15 digits remain.
    """
    text = phone.strip()
    text = text.removeprefix("+")
    digits = text.replace(" ", "").replace("-", "")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"a phone number is digits (an optional leading +), not {phone!r}")
    if not PHONE_MIN_DIGITS <= len(digits) <= PHONE_MAX_DIGITS:
        raise ValueError(
            f"a phone number has {PHONE_MIN_DIGITS}-{PHONE_MAX_DIGITS} digits, not {len(digits)}"
        )
    return digits


def cardless_pan(phone: str) -> str:
    """The 16-digit "PAN" a cardless PIN block is built with: the phone's digits,
    left-padded with zeros. ISO 9564 format 0 binds the PIN to the PAN's 12 rightmost
    digits before the last one, so a code block lifted from one phone fails on another."""
    return phone_digits(phone).rjust(16, "0")


def encode_field63(phone: str, mode: str, template_text: str | None = None) -> str:
    """Field 63 of a cardless 0100/0200 (``template_text``: the face the ATM captured)."""
    if mode not in MODES:
        raise ValueError(f"cardless method must be one of {MODES}, not {mode!r}")
    text = f"CL=1;PH={phone_digits(phone)};M={mode}"
    if template_text:
        if ";" in template_text:
            raise ValueError("a face template's text cannot contain ';'")
        text += f";FT={template_text}"
    return text


def parse_field63(text: str) -> dict[str, str]:
    """``{"phone": digits, "mode": code|face|both}`` plus ``"template"`` when FT is there.

    Malformed content raises :class:`CodecError` naming field 63. The template text is
    returned as sent; the host decodes (and checksums) it with ``FaceTemplate.from_text``.
    """
    items: dict[str, str] = {}
    for part in text.split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise CodecError(f"cardless item {part[:8]!r} has no '='", field="63")
        if key in items:
            raise CodecError(f"cardless item {key} repeated", field="63")
        items[key] = value
    if items.get("CL") != "1":
        raise CodecError("not cardless data (CL=1 missing)", field="63")
    try:
        phone = phone_digits(items.get("PH", ""))
    except ValueError as exc:
        raise CodecError(f"cardless PH: {exc}", field="63") from None
    mode = items.get("M", "")
    if mode not in MODES:
        raise CodecError(f"cardless M must be one of {MODES}", field="63")
    out = {"phone": phone, "mode": mode}
    if items.get("FT"):
        out["template"] = items["FT"]
    return out
