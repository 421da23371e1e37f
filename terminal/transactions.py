"""Build the terminal's ISO 8583 requests from what the session knows.

Link-level fields (STAN, times, terminal id) are stamped by the host client; this
module fills the card, amount and acceptor fields, and the original-data elements that
tie a reversal to the request it undoes.
"""

from __future__ import annotations

from collections.abc import Mapping

from host_link.binding import encode_request as encode_binding_request
from host_link.codec import Message
from host_link.codes import Mti, NetworkCode, ProcessingCode
from terminal.config import TerminalConfig
from terminal.drivers.card_reader.base import CardData

ENTRY_MODE_CHIP_PIN = "051"


def _card_fields(config: TerminalConfig, card: CardData, pin_block: bytes, ksn: str) -> Message:
    fields: Message = {
        "2": card.pan,
        "14": card.expiry,
        "22": ENTRY_MODE_CHIP_PIN,
        "32": config.acquirer_id,
        "42": config.acceptor_id.ljust(15),
        "43": config.location.ljust(40),
        "49": config.currency,
    }
    # ISO 8583:1987 field 52 is 8 bytes: a 16-byte AES (format 4) block goes in field 110.
    fields["52" if len(pin_block) == 8 else "110"] = pin_block.hex().upper()
    if card.track2:
        fields["35"] = card.track2
    if ksn:
        fields["53"] = ksn  # DUKPT: the key serial number the PIN block was encrypted under
    return fields


def balance_inquiry(
    config: TerminalConfig, card: CardData, pin_block: bytes, ksn: str = ""
) -> Message:
    """0100: verifies the PIN and returns balances and the session's withdrawal limit."""
    return {"t": Mti.AUTH_REQUEST, "3": ProcessingCode.BALANCE_INQUIRY} | _card_fields(
        config, card, pin_block, ksn
    )


def withdrawal(
    config: TerminalConfig, card: CardData, pin_block: bytes, amount: int, ksn: str = ""
) -> Message:
    """0200 cash withdrawal of ``amount`` minor units."""
    return {
        "t": Mti.FINANCIAL_REQUEST,
        "3": ProcessingCode.WITHDRAWAL,
        "4": f"{amount:012d}",
    } | _card_fields(config, card, pin_block, ksn)


def supervisor_card_entry(
    config: TerminalConfig, card: CardData, pin_block: bytes, ksn: str = ""
) -> Message:
    """0800/171 with a supervisor card and its PIN block: the host checks both, as for a
    customer, and answers the card's role (sim/host/supervision/cards.py)."""
    return {"t": Mti.NETWORK_REQUEST, "70": NetworkCode.SUPERVISOR_ENTER} | _card_fields(
        config, card, pin_block, ksn
    )


def original_data(request: Mapping[str, str], acquirer_id: str) -> str:
    """Field 90: original MTI, STAN, transmission time, acquirer and forwarding ids."""
    return f"{request['t']}{request['11']}{request['7']}{acquirer_id[-11:]:0>11}{'0' * 11}"


def reversal(config: TerminalConfig, request: Mapping[str, str], dispensed: int = 0) -> Message:
    """0400 (nothing dispensed) or 0420 advice (``dispensed`` > 0, carried in field 95).

    Card data and the PIN block are not repeated: field 90 identifies the original.
    """
    message: Message = {
        "t": Mti.REVERSAL_ADVICE if dispensed else Mti.REVERSAL_REQUEST,
        "3": request["3"],
        "4": request["4"],
        "32": config.acquirer_id,
        "49": config.currency,
        "90": original_data(request, config.acquirer_id),
    }
    if dispensed:
        message["95"] = f"{dispensed:012d}" + "0" * 30
    return message


def payapp_binding(
    config: TerminalConfig,
    card: CardData,
    pin_block: bytes,
    ksn: str = "",
    session_id: str | None = None,
) -> Message:
    """0100 bind the card's account to a payment app: open a session (``session_id``
    None) or ask where it is; card and PIN go with each (host_link.binding)."""
    return {
        "t": Mti.AUTH_REQUEST,
        "3": ProcessingCode.PAYAPP_BIND,
        "48": encode_binding_request(session_id),
    } | _card_fields(config, card, pin_block, ksn)
