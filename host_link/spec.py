"""The ISO 8583:1987 field specification of our host link, as data.

All-ASCII encoding (numeric and text fields as ASCII characters, the bitmap and binary
fields as hexadecimal ASCII), which is also what Wireshark's ISO 8583 dissector assumes by
default. ``docs/host-link.md`` documents every field we use and how.
"""

from __future__ import annotations

import copy
from typing import Any

from iso8583.specs import default_ascii

FieldSpec = dict[str, Any]


def _field(len_type: int, max_len: int, desc: str) -> FieldSpec:
    return {
        "data_enc": "ascii",
        "len_enc": "ascii",
        "len_type": len_type,
        "max_len": max_len,
        "desc": desc,
    }


SPEC: dict[str, FieldSpec] = copy.deepcopy(default_ascii)
SPEC.update(
    {
        # Pinned explicitly: these are the fields our contract relies on.
        "2": _field(2, 19, "Primary Account Number (PAN)"),
        "3": _field(0, 6, "Processing Code"),
        "4": _field(0, 12, "Amount, Transaction (minor units)"),
        "7": _field(0, 10, "Transmission Date and Time (MMDDhhmmss, UTC)"),
        "11": _field(0, 6, "System Trace Audit Number"),
        "12": _field(0, 6, "Time, Local Transaction (hhmmss)"),
        "13": _field(0, 4, "Date, Local Transaction (MMDD)"),
        "14": _field(0, 4, "Date, Expiration (YYMM)"),
        "22": _field(0, 3, "Point of Service Entry Mode"),
        "32": _field(2, 11, "Acquiring Institution Identification Code"),
        "35": _field(2, 37, "Track 2 Data"),
        "37": _field(0, 12, "Retrieval Reference Number"),
        "38": _field(0, 6, "Authorization Identification Response"),
        "39": _field(0, 2, "Response Code"),
        "41": _field(0, 8, "Card Acceptor Terminal Identification"),
        "42": _field(0, 15, "Card Acceptor Identification Code"),
        "43": _field(0, 40, "Card Acceptor Name/Location"),
        "48": _field(3, 999, "Additional Data, Private: payment-app binding (host_link.binding)"),
        "49": _field(0, 3, "Currency Code, Transaction"),
        "52": _field(0, 16, "PIN Data (hex): 8-byte TDES block, ISO 9564 format 0"),
        "53": _field(2, 48, "Security Related Control Information: DUKPT KSN (hex)"),
        "54": _field(3, 120, "Additional Amounts"),
        "61": _field(3, 255, "Reserved Private: joint account (host_link/joint.py)"),
        "62": _field(3, 999, "Reserved Private: terminal location"),
        "63": _field(3, 999, "Reserved Private: service data"),
        "64": _field(0, 16, "Message Authentication Code (hex)"),
        "70": _field(0, 3, "Network Management Information Code"),
        "90": _field(0, 42, "Original Data Elements"),
        "95": _field(0, 42, "Replacement Amounts"),
        # enterprise (corporate cards): the fund account and the role/department claim
        "102": _field(2, 28, "Account Identification 1: enterprise fund account"),
        "124": _field(3, 999, "Reserved Private: enterprise role, department and grant"),
        "110": _field(3, 64, "Encryption Data: 16-byte AES PIN block, ISO 9564 format 4 (hex)"),
        "128": _field(0, 16, "Message Authentication Code (hex)"),
    }
)

# Fields whose content is secret or personal: masked in every log line and repr.
SENSITIVE_FIELDS = frozenset({"2", "35", "52", "53", "61", "63", "64", "110", "128"})
# Where a PIN block travels, by its length: format 0 (TDES) in 52, format 4 (AES) in 110.
PIN_BLOCK_FIELDS = ("52", "110")

# Field 43 is fixed at 40 characters; pyiso8583 wants fixed fields exactly full.
FIXED_WIDTH = {
    key: spec["max_len"]
    for key, spec in SPEC.items()
    if spec["len_type"] == 0 and key not in {"h", "t", "p", "1"}
}
