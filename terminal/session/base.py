"""What every customer session does, whichever way the customer identified themselves.

A session is a controller: it talks to the devices and the host and fires the trigger
that names what happened; the state table (:mod:`terminal.fsm.customer`) decides whether
that move is legal and where it leads. This module holds the parts the card session and
the cardless session do alike (journal, firing, the run from start to receipt, a
non-financial exchange with the host, declines, the customer giving up, the location and
the camera evidence a response may ask for), so that each kind of session keeps only what
is its own. The cash path both share is a separate object each session owns
(:class:`terminal.session.cash.CashPath`).

The PIN block (or the cardless code's block) lives only in the session for its duration
and is dropped at its end. Every step goes to the journal, card or phone numbers masked.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Any, ClassVar, NoReturn, Protocol

from atm_common.errors import AtmError
from host_link.amounts import AmountType, decode_amounts
from host_link.client import HostClient
from host_link.codec import Message
from host_link.codes import Mti, ResponseCode, response_code
from host_link.errors import CodecError, HostLinkError
from host_link.evidence import (
    RESPONSE_CHARS,
    EvidenceRequest,
    decode_sealed,
    encode_sealed,
    parse_request,
    part_plaintexts,
)
from terminal.config import TerminalConfig
from terminal.devices import Devices
from terminal.drivers.pinpad.base import EntryOutcome
from terminal.evidence import encode, grab
from terminal.fsm.customer import CustomerMachine
from terminal.journal import Journal
from terminal.link_security import with_ksn
from terminal.location import current_location
from terminal.saf import SafQueue
from terminal.session.printing import print_lines, printer_problem
from terminal.ui import Amount, Display, Screen

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SessionResult:
    """How a session ended, for the terminal loop, the console and the tests."""

    session_id: str
    outcome: str
    states: list[str]
    dispensed: int = 0
    response_code: str | None = None
    masked_pan: str | None = None
    card_retained: bool = False
    stan: str | None = None  # of the approved withdrawal (field 11)
    auth_code: str | None = None  # the issuer's approval code (field 38)
    fee: int | None = None  # field 28, when the host charged one
    balance: int | None = None  # available balance after it, when the host returned one


class SessionEnd(Exception):
    """Unwinds a session to its ending with ``outcome``.

    Control flow, not an error: whichever step decides the session is over (a decline,
    the customer walking away, cash taken) has already fired the trigger that names it,
    and :meth:`CustomerSession.run` catches this to hand back the card (if any) and
    print the receipt. It is deliberately not an :class:`~atm_common.errors.AtmError`,
    which the terminal loop treats as a defect.
    """

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def check_response(response: Message) -> None:
    """A response without a well-formed response code is no response at all."""
    code = response.get("39", "")
    if len(code) != 2 or not code.isalnum():
        raise CodecError(f"response {response.get('t')} has no valid response code", field="39")


# The fields of a request that a reversal or advice needs (field 90 and amounts): no card data.
ORIGINAL_FIELDS = ("t", "3", "4", "7", "11", "32", "49")


def original_fields(request: Message) -> dict[str, str]:
    """The part of ``request`` that may be kept (and journalled) after it is sent: what a
    reversal needs to name the original, and no PAN, track or PIN block."""
    return {k: request[k] for k in ORIGINAL_FIELDS if k in request}


class CassetteBooks(Protocol):
    """The cassette counters a session books notes in (terminal/supervisor/counters.py's
    CashCounters): retracted notes go to the retract bin, and balancing counts them there."""

    def record(
        self, position: int, *, dispensed: int = 0, rejected: int = 0, retracted: int = 0
    ) -> None: ...


class CustomerSession(abc.ABC):
    """One customer, from the trigger that begins the session until the terminal is idle.

    Subclasses say how the session begins (:attr:`START`), what happens in it
    (:meth:`transact`), which declines end their own way (:meth:`decline_specially`),
    what is handed back at the end (:meth:`hand_back`) and who the receipt is for
    (:meth:`receipt_customer`).
    """

    START: ClassVar[str]  # the trigger that begins this kind of session

    def __init__(
        self,
        session_id: str,
        config: TerminalConfig,
        devices: Devices,
        host: HostClient,
        journal: Journal,
        display: Display,
        machine: CustomerMachine,
        saf: SafQueue,
        *,
        cash_available: bool = True,
        cash_counters: CassetteBooks | None = None,
    ) -> None:
        self.id = session_id
        self.saf = saf
        self.cash_available = cash_available
        # the cassette counters balancing reads (terminal/supervisor/counters.py), if kept
        self.cash_counters = cash_counters
        self.config, self.devices, self.host = config, devices, host
        self.journal, self.display, self.fsm = journal, display, machine
        self._pin_block = b""
        self._pin_ksn = ""
        self._evidence: tuple[EvidenceRequest, list[Any]] | None = None
        self.result = SessionResult(session_id, "in_progress", [])
        self.receipt_problem: str | None = None  # why no receipt can be printed, if so
        self._start = len(machine.path)

    # --- what each kind of session says for itself -------------------------------------

    @abc.abstractmethod
    async def transact(self) -> None:
        """The session's own steps; ends by raising :class:`SessionEnd`."""

    @abc.abstractmethod
    def hand_back(self) -> None:
        """Give back what the customer brought (the card), after :meth:`transact`."""

    @abc.abstractmethod
    def receipt_customer(self) -> str:
        """The receipt line that says whose session it was (masked)."""

    def card_before_cash(self) -> bool:
        """Give the card back before the cash is presented (a card session overrides);
        False if the customer did not take it (then it is retained)."""
        return True

    def receipt_extras(self) -> list[str]:
        """Lines after the result and cash on the receipt (none unless overridden)."""
        return []

    @abc.abstractmethod
    def decline_specially(self, code: str, rc: ResponseCode) -> None:
        """End a decline this kind of session treats its own way (fire, then raise
        :class:`SessionEnd`); return for the ordinary decline."""

    # --- shared ---------------------------------------------------------------------------

    def money(self, minor: int) -> Amount:
        """An amount for the customer's screen or receipt, in the terminal's currency
        (text as ``atm_common.money.format_minor``; a kiosk formats it per locale)."""
        return Amount(minor, self.config.currency)

    def log(self, event: str, *, durable: bool = False, **data: Any) -> None:
        self.journal.record(event, self.id, durable=durable, **data)

    def fire(self, trigger: str) -> None:
        """Fire ``trigger`` on the state machine and journal the move it made."""
        before = self.fsm.state
        self.fsm.fire(trigger)
        self.log("state", trigger=trigger, source=before.value, dest=self.fsm.state.value)

    async def run(self) -> SessionResult:
        """Run from :attr:`START` until the terminal is idle again."""
        self.fire(self.START)
        self.receipt_problem = printer_problem(self.devices.printer)
        if self.receipt_problem:  # told before the transaction: it goes on without one
            self.display.show(Screen.NO_RECEIPT, reason=self.receipt_problem)
            self.log("no_receipt_offered", reason=self.receipt_problem)
        try:
            await self.transact()
        except SessionEnd as end:
            self.result.outcome = end.outcome
        finally:
            self.forget_pin()
        self.hand_back()
        self.receipt()
        self.result.states = [s.value for s in self.fsm.path[self._start :]]
        self.log(
            "session_end",
            durable=True,
            outcome=self.result.outcome,
            dispensed=self.result.dispensed,
        )
        await self.send_evidence()
        return self.result

    def forget_pin(self) -> None:
        """PCI PIN: the block is not kept past the request that carries it."""
        self._pin_block = b""

    async def exchange(self, request: Message) -> Message:
        """A request that changes no money (0100): any link failure ends the session."""
        try:
            stamped = with_ksn(self.host.stamp(request), self.devices.pinpad)
            response = await self.host.request(stamped)
            check_response(response)
            self.note_evidence(response)
            return response
        except (HostLinkError, CodecError) as exc:
            self.log("host_error", error=str(exc))
            self.host_unavailable()

    def decline(self, code: str) -> NoReturn:
        """The host said no: tell the customer why, in their words, and end the session."""
        rc = response_code(code)
        self.result.response_code = code
        self.log("declined", code=code, meaning=rc.meaning)
        self.decline_specially(code, rc)
        self.display.show(Screen.DECLINED, reason=rc.customer_text)
        self.fire("declined")
        raise SessionEnd(f"declined:{code}")

    def host_unavailable(self) -> NoReturn:
        self.display.show(Screen.DECLINED, reason="Service unavailable. Please try later.")
        self.fire("host_unavailable")
        raise SessionEnd("host_unavailable")

    def customer_gave_up(self, outcome: EntryOutcome, where: str) -> None:
        """Nothing, if the customer entered something; else end on cancel or timeout."""
        if outcome is EntryOutcome.ENTERED:
            return
        trigger = "cancel" if outcome is EntryOutcome.CANCELLED else "timeout"
        self.log(f"customer_{trigger}", at=where)
        self.fire(trigger)
        raise SessionEnd("cancelled" if trigger == "cancel" else "timeout")

    def location(self) -> str:
        """Field 62: GPS fix, else the configured site, else 'none' (see terminal.location)."""
        return current_location(self.devices.gps, self.config.site).field62()

    def note_evidence(self, response: Message) -> None:
        """A card session's response carries sealed field 63 (see host_link.evidence),
        which may quietly ask for camera snapshots; only the PIN pad can open it."""
        field = response.get("63")
        if field is None or self._evidence is not None:
            return
        try:
            sealed = decode_sealed(field, RESPONSE_CHARS)
            opened = self.devices.pinpad.decrypt_response_data(sealed, ksn=response.get("53"))
        except (CodecError, ValueError, AtmError) as exc:
            log.warning("response field 63 unreadable: %s", exc)
            return
        request = parse_request(opened)
        if request is not None:
            self._evidence = (request, grab(self.devices.camera, request))

    async def send_evidence(self) -> None:
        """Send the snapshots asked for, after the customer is served, as 0620 advices,
        each part sealed by the PIN pad to the same size (host_link.evidence)."""
        if self._evidence is None:
            return
        request, frames = self._evidence
        self._evidence = None
        pinpad = self.devices.pinpad
        advices: list[Message] = []
        for index, jpeg in enumerate(encode(frames)):
            for plaintext in part_plaintexts(request.ref, index, jpeg):
                advice = with_ksn(
                    self.host.stamp({"t": Mti.ADMIN_ADVICE, "32": self.config.acquirer_id}),
                    pinpad,
                )
                sealed = pinpad.encrypt_advice_data(plaintext, ksn=advice.get("53"))
                advices.append({**advice, "63": encode_sealed(sealed)})
        self.saf.enqueue_all(advices)  # dozens of parts: one durable commit, not one each
        await self.saf.drain(self.host, force=True)

    def note_approval(self, request: Message, response: Message) -> None:
        """What the receipt says of an approved withdrawal: STAN, approval code, fee and
        the balance after it, where the host returned them."""
        result = self.result
        result.stan, result.auth_code = request.get("11"), response.get("38")
        fee = response.get("28", "")
        if len(fee) == 9 and fee[0] in "CD" and fee[1:].isdigit():
            result.fee = int(fee[1:])
        try:
            amounts = decode_amounts(response.get("54", ""))
        except CodecError:
            amounts = {}
        result.balance = amounts.get(AmountType.AVAILABLE_BALANCE)

    def receipt(self) -> None:
        result = self.result
        lines = [
            f"{self.journal.clock.now():%Y-%m-%d %H:%M:%S %Z}",
            f"Terminal {self.config.terminal_id}  {self.config.location.strip()}",
            self.receipt_customer(),
        ]
        if result.stan or result.auth_code:
            lines.append(f"STAN {result.stan or '-'}  Auth {result.auth_code or '-'}")
        lines.append(f"Result {result.outcome}")
        if result.dispensed:
            lines.append(f"Cash dispensed {self.money(result.dispensed)}")
        if result.fee is not None:
            lines.append(f"Fee {self.money(result.fee)}")
        if result.balance is not None:
            lines.append(f"Available balance {self.money(result.balance)}")
        lines += self.receipt_extras()
        receipt = " | ".join(lines)
        self.display.show(Screen.RECEIPT, receipt=receipt)
        self.log("receipt", text=receipt)
        if self.devices.printer is not None and not self.receipt_problem:
            failed = print_lines(self.devices.printer, lines, title=self.config.location.strip())
            self.log("receipt_printed" if failed is None else "receipt_not_printed", error=failed)
        self.fire("session_ended")
