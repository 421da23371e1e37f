"""Encode and decode ISO 8583 messages with pyiso8583 and our spec.

A message is a plain ``dict[str, str]`` keyed as pyiso8583 keys it: ``"t"`` for the MTI
and field numbers as strings. Errors come out as :class:`~host_link.errors.CodecError`
naming the field and byte position; :func:`describe` renders a message with every
sensitive field masked, for logs and exception texts.
"""

from __future__ import annotations

from collections.abc import Mapping

import iso8583

from atm_common.masking import mask_pan, mask_track2
from host_link.errors import CodecError
from host_link.spec import SENSITIVE_FIELDS, SPEC

Message = dict[str, str]


def encode(message: Mapping[str, str]) -> bytes:
    """Encode ``message`` (not modified) to wire bytes, without the length prefix."""
    doc = {k: v for k, v in message.items() if k not in {"p", "1"}}
    if "t" not in doc:
        raise CodecError("message has no MTI", field="t")
    try:
        raw, _ = iso8583.encode(doc, SPEC)
    except iso8583.EncodeError as exc:
        raise CodecError(f"cannot encode: {_masked_reason(exc)}", field=_field_of(exc)) from None
    return bytes(raw)


def decode(data: bytes) -> Message:
    """Decode wire bytes (without the length prefix) into a message dict."""
    try:
        doc, _ = iso8583.decode(bytes(data), SPEC)
    except iso8583.DecodeError as exc:
        raise CodecError(
            f"cannot decode: {_masked_reason(exc)}", field=exc.field, position=exc.pos
        ) from None
    mti = doc.get("t", "")
    if not (len(mti) == 4 and mti.isdigit()):
        raise CodecError(f"MTI {mti!r} is not 4 digits", field="t", position=0)
    return {k: v for k, v in doc.items() if k not in {"p", "1"}}


def _field_of(exc: iso8583.EncodeError) -> str | None:
    return getattr(exc, "field", None)


def _masked_reason(exc: Exception) -> str:
    """pyiso8583 messages name fields but may echo values; keep only the first clause."""
    text = str(exc)
    field = getattr(exc, "field", None)
    if field in SENSITIVE_FIELDS:
        # e.g. "Field data is 20 bytes, larger than maximum 19: field 2" - lengths only
        return text.split(":")[0] + f": field {field}"
    return text


def mask_value(field: str, value: str) -> str:
    if field not in SENSITIVE_FIELDS:
        return value
    if field == "2":
        return mask_pan(value)
    if field == "35":
        return mask_track2(value)
    return f"<{len(value)} chars>"


def describe(message: Mapping[str, str]) -> str:
    """One-line rendering with PAN to 6/4, track 2, PIN block, KSN and MACs masked."""
    mti = message.get("t", "????")
    fields = sorted((k for k in message if k.isdigit()), key=int)
    body = " ".join(f"{k}={mask_value(k, message[k])!r}" for k in fields)
    return f"<{mti} {body}>"
