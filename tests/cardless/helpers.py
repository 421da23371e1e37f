"""Builders for cardless tests: the demo host, the phone steps, and ATM requests.

ATM requests are built the way the ATM builds them (``terminal/session/cardless.py``): field 63
from :func:`host_link.cardless.encode_field63`, and the reservation code as a PIN block
whose "PAN" is :func:`host_link.cardless.cardless_pan` of the phone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from host_link.cardless import cardless_pan, encode_field63
from host_link.codec import Message
from host_link.codes import Mti, ProcessingCode
from sim.data import FACES_DIR as FACES
from sim.host.cardless.phone import PhoneBank
from tests.host.helpers import Card, Host, Terminal

FRANK_PHONE = "+4915100000006"
FRANK_DEBIT, FRANK_CREDIT = "1000000006", "1000000007"  # debit and credit card products
CLEARING, FEES = "GL-CARDLESS", "GL-FEES-CARDLESS"


def face(name: str) -> Path:
    """A photo from the repository's test data; a missing one fails the test, never skips it."""
    path = FACES / name
    if not path.is_file():
        pytest.fail(f"test photo {path} is missing (see sim/data/faces/README.md)")
    return path


def sms_code(bank: PhoneBank, phone: str = FRANK_PHONE) -> str:
    """The 6-digit code in the newest SMS to ``phone``."""
    for message in reversed(bank.messages(phone)):
        found = re.search(r"\b(\d{6})\b", message["text"])
        if found:
            return found.group(1)
    raise AssertionError(f"no SMS with a code for {phone}: {bank.messages(phone)}")


def reserve(
    bank: PhoneBank,
    probe: object,
    *,
    method: str = "code",
    amount: int = 10_000,
    account: str = FRANK_DEBIT,
    phone: str = FRANK_PHONE,
) -> dict[str, object]:
    """The whole phone flow at the service level, the face check with a precomputed
    template (``probe``) so tests do not each pay for face detection."""
    request_id = bank.request(phone)["request_id"]
    bank.verify_code(request_id, sms_code(bank, phone))
    result = bank.face_checked(request_id, probe)  # type: ignore[arg-type]
    assert result.match, result
    quote = bank.quote(request_id, account, amount, method)
    return bank.confirm(request_id, quote["quote_id"])


def atm_request(
    terminal: Terminal,
    *,
    mti: str = Mti.AUTH_REQUEST,
    mode: str = "code",
    code: str | None = None,
    template: str | None = None,
    amount: int | None = None,
    phone: str = FRANK_PHONE,
    over: Mapping[str, str] | None = None,
) -> Message:
    """A stamped cardless 0100 (inquiry) or 0200 (withdrawal) from ``terminal``."""
    processing = (
        ProcessingCode.CARDLESS_INQUIRY
        if mti == Mti.AUTH_REQUEST
        else ProcessingCode.CARDLESS_WITHDRAWAL
    )
    fields: Message = {
        "t": mti,
        "3": processing,
        "32": terminal.config.acquirer_id,
        "42": terminal.config.acceptor_id.ljust(15),
        "43": terminal.config.location.ljust(40),
        "49": "840",
        "63": encode_field63(phone, mode, template),
    }
    if code is not None:
        as_card = Card(pan=cardless_pan(phone), pin=code, expiry="", account="", daily_limit=0)
        block, ksn = terminal.pin_block(as_card)
        fields["52" if len(block) == 8 else "110"] = block.hex().upper()
        if ksn:
            fields["53"] = ksn
    if amount is not None:
        fields["4"] = f"{amount:012d}"
    return terminal.client.stamp({**fields, **(over or {})})


def handle(host: Host, request: Message) -> Message:
    response = host.authoriser.handle(request)
    assert response is not None
    return response


def reservation_row(host: Host, reservation_id: object) -> dict[str, object]:
    row = host.conn.execute("SELECT * FROM reservations WHERE id = ?", (reservation_id,)).fetchone()
    assert row is not None
    return dict(row)
