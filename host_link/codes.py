"""Message types, processing codes and response codes as tables."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping


class Mti(enum.StrEnum):
    AUTH_REQUEST = "0100"  # PIN verification + balance inquiry
    AUTH_RESPONSE = "0110"
    FINANCIAL_REQUEST = "0200"  # cash withdrawal
    FINANCIAL_RESPONSE = "0210"
    REVERSAL_REQUEST = "0400"
    REVERSAL_REQUEST_REPEAT = "0401"
    REVERSAL_RESPONSE = "0410"
    REVERSAL_ADVICE = "0420"
    REVERSAL_ADVICE_REPEAT = "0421"
    REVERSAL_ADVICE_RESPONSE = "0430"
    ADMIN_ADVICE = "0620"  # snapshots for a silent alarm (host_link.evidence)
    ADMIN_ADVICE_REPEAT = "0621"
    ADMIN_ADVICE_RESPONSE = "0630"
    NETWORK_REQUEST = "0800"
    NETWORK_RESPONSE = "0810"


def response_mti(request_mti: str) -> str:
    """ISO 8583:1987: the response class digit is the request's plus one (0421 -> 0430)."""
    if len(request_mti) != 4 or not request_mti.isdigit() or request_mti[2] not in "02":
        raise ValueError(f"{request_mti!r} is not a request MTI")
    return request_mti[:2] + str(int(request_mti[2]) + 1) + "0"


class ProcessingCode(enum.StrEnum):
    """Field 3: transaction type (2), from account (2), to account (2)."""

    WITHDRAWAL = "010000"
    BALANCE_INQUIRY = "310000"
    # Cardless (field 63 carries the phone and method, see host_link/cardless.py):
    CARDLESS_INQUIRY = "319000"  # 0100: is there a reservation, does the method check pass
    CARDLESS_WITHDRAWAL = "019000"  # 0200: take exactly the reserved amount
    # Binding the card's account to a payment app (field 48: host_link/binding.py):
    PAYAPP_BIND = "929000"  # 0100 with card + PIN: open a session, or ask where it is


class NetworkCode(enum.StrEnum):
    """Field 70 network management information codes."""

    SIGN_ON = "001"
    SIGN_OFF = "002"
    KEY_EXCHANGE = "101"
    ECHO = "301"
    # Supervision (host_link/supervision.py, docs/supervisor.md): field 63 carries the data.
    DEVICE_STATUS = "161"  # the terminal's mode, device status list and cash position
    SUPERVISOR_ENTER = "171"  # out of customer service: a supervisor is at the machine
    SUPERVISOR_EXIT = "172"  # back to customer service
    EXCHANGE_START = "181"  # replenishment begins: the host answers its cash figure
    EXCHANGE_END = "182"  # counts found and loaded: the host balances and books them


def is_key_exchange(message: Mapping[str, str]) -> bool:
    """0800/0810 carrying new working keys: MACed under the master key, not the MAC key."""
    return message.get("t", "")[:2] == "08" and message.get("70") == NetworkCode.KEY_EXCHANGE


@dataclasses.dataclass(frozen=True)
class ResponseCode:
    code: str
    meaning: str
    approved: bool = False
    retain_card: bool = False
    customer_text: str = "Your transaction cannot be completed."
    # The host did not (or could not) say what it did with the request: a terminal that
    # sent money-moving request treats the answer as no answer at all, and reverses.
    in_doubt: bool = False


_CODES = [
    ResponseCode("00", "Approved", approved=True, customer_text="Approved."),
    ResponseCode("05", "Do not honour"),
    ResponseCode("09", "Request in progress", customer_text="Waiting for approval."),
    ResponseCode("12", "Invalid transaction"),
    # joint accounts (docs/joint-accounts.md): the 09 above is their "in progress"
    ResponseCode("1A", "Additional customer authentication required (personal code)"),
    ResponseCode(
        "J1",
        "Joint account locked",
        customer_text="This joint account is locked. Please contact your bank.",
    ),
    ResponseCode("J2", "Rejected by a co-owner", customer_text="A co-owner rejected this."),
    ResponseCode("J3", "Approval expired", customer_text="No co-owner approved in time."),
    ResponseCode("J4", "Approval not valid (cancelled, used or another operation)"),
    ResponseCode("13", "Invalid amount", customer_text="Please choose another amount."),
    ResponseCode("14", "Invalid card number", customer_text="This card is not accepted."),
    # supervision (docs/supervisor.md): an 0800/182 for an exchange id not open for this terminal
    ResponseCode("25", "Unable to locate record (exchange id unknown)"),
    ResponseCode("30", "Format error", in_doubt=True),
    ResponseCode("51", "Insufficient funds", customer_text="Insufficient funds."),
    ResponseCode("54", "Expired card", customer_text="This card has expired."),
    ResponseCode("55", "Incorrect PIN", customer_text="Incorrect PIN. Please try again."),
    ResponseCode("57", "Transaction not permitted to cardholder"),
    ResponseCode("58", "Transaction not permitted to terminal"),
    ResponseCode("63", "Security violation (MAC or key)", in_doubt=True),
    ResponseCode(
        "61", "Exceeds withdrawal amount limit", customer_text="The amount exceeds your limit."
    ),
    ResponseCode(
        "75",
        "Allowable number of PIN tries exceeded",
        retain_card=True,
        customer_text="PIN tries exceeded. Your card has been retained.",
    ),
    ResponseCode("91", "Issuer or switch inoperative", customer_text="Service unavailable."),
    ResponseCode("94", "Duplicate transmission"),
    ResponseCode("96", "System malfunction", in_doubt=True, customer_text="Service unavailable."),
]
RESPONSE_CODES: dict[str, ResponseCode] = {rc.code: rc for rc in _CODES}


def response_code(code: str) -> ResponseCode:
    """Look up a response code; an unknown one is treated as a decline, never approval."""
    return RESPONSE_CODES.get(code, ResponseCode(code, f"Unknown response code {code!r}"))
