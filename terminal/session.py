"""One customer session, from card in to card out, driven through the state machine.

The controller talks to the devices and the host and fires the trigger that names what
happened; the machine's table decides whether that move is legal. The PIN block lives
only in this object for the session's duration and is dropped at its end. Every step
goes to the journal with the card number masked.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, NoReturn

from atm_common.errors import AtmError, LocalProtocolError
from host_link.amounts import AmountType, decode_amounts
from host_link.client import HostClient
from host_link.codec import Message
from host_link.codes import Mti, response_code
from host_link.errors import CodecError, HostLinkError
from host_link.evidence import EvidenceRequest, parse_request, parts
from terminal import transactions
from terminal.config import TerminalConfig
from terminal.devices import Devices
from terminal.drivers.card_reader.base import CardData, CardUnreadable
from terminal.drivers.pinpad.base import EntryOutcome
from terminal.errors import DeviceError
from terminal.evidence import encode, grab
from terminal.fsm.customer import CustomerMachine, State
from terminal.journal import Journal
from terminal.link_security import with_ksn
from terminal.location import current_location
from terminal.saf import SafQueue
from terminal.ui import Display, Screen, money

log = logging.getLogger(__name__)

MENU_KEYS = {"F1": "withdrawal", "F2": "balance"}


@dataclasses.dataclass
class SessionResult:
    session_id: str
    outcome: str
    states: list[str]
    dispensed: int = 0
    response_code: str | None = None
    masked_pan: str | None = None
    card_retained: bool = False


class _End(Exception):
    """Unwinds a session to card return with its outcome (internal control flow)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class CustomerSession:
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
    ) -> None:
        self.id = session_id
        self.saf = saf
        self.cash_available = cash_available
        self.config, self.devices, self.host = config, devices, host
        self.journal, self.display, self.fsm = journal, display, machine
        self.card: CardData | None = None
        self._pin_block = b""
        self._pin_ksn = ""
        self._limits: dict[AmountType, int] = {}
        self._approved_request: Message = {}
        self._evidence: tuple[EvidenceRequest, list[Any]] | None = None
        self.result = SessionResult(session_id, "in_progress", [])
        self._start = len(machine.path)

    def log(self, event: str, *, durable: bool = False, **data: Any) -> None:
        self.journal.record(event, self.id, durable=durable, **data)

    def fire(self, trigger: str) -> None:
        before = self.fsm.state
        self.fsm.fire(trigger)
        self.log("state", trigger=trigger, source=before.value, dest=self.fsm.state.value)

    START = "card_inserted"  # the trigger that begins this kind of session

    async def run(self) -> SessionResult:
        """Run from a card in the reader until the terminal is idle again."""
        self.fire(self.START)
        try:
            await self._transact()
        except _End as end:
            self.result.outcome = end.outcome
        finally:
            self._pin_block = b""
        self._return_card()
        self._receipt()
        self.result.states = [s.value for s in self.fsm.path[self._start :]]
        self.log(
            "session_end",
            durable=True,
            outcome=self.result.outcome,
            dispensed=self.result.dispensed,
        )
        await self._send_evidence()
        return self.result

    def _note_evidence(self, response: Message) -> None:
        """A response may quietly ask for camera snapshots (see host_link.evidence)."""
        request = parse_request(response.get("63", ""))
        if request is not None and self._evidence is None:
            self._evidence = (request, grab(self.devices.camera, request))

    async def _send_evidence(self) -> None:
        if self._evidence is None:
            return
        request, frames = self._evidence
        self._evidence = None
        for index, jpeg in enumerate(encode(frames)):
            for text in parts(request.ref, index, jpeg):
                advice = {"t": Mti.ADMIN_ADVICE, "32": self.config.acquirer_id, "63": text}
                self.saf.enqueue(with_ksn(self.host.stamp(advice), self.devices.pinpad))
        await self.saf.drain(self.host, force=True)

    async def _transact(self) -> None:
        self._read_card()
        await self._verify_pin()
        choice = self._menu()
        if choice == "balance":
            self._show_balance()
            raise _End("balance_shown")
        amount = self._amount()
        response = await self._authorise(amount)
        await self._dispense(amount, response)

    def _read_card(self) -> None:
        try:
            self.card = self.devices.card_reader.read_card()
        except CardUnreadable as exc:
            self.log("card_unreadable", reason=str(exc))
            self.display.show(Screen.DECLINED, reason="This card cannot be read.")
            self.fire("card_unreadable")
            raise _End("card_unreadable") from None
        self.result.masked_pan = self.card.masked_pan
        self.log("card_read", pan=self.card.pan, expiry=self.card.expiry)
        self.fire("card_read")

    async def _verify_pin(self) -> None:
        assert self.card is not None
        while True:
            self.display.show(Screen.ENTER_PIN)
            entry = self.devices.pinpad.read_pin(self.card.pan, timeout=self.config.timeouts.pin)
            self._customer_gave_up(entry.outcome, "pin")
            self._pin_block, self._pin_ksn = entry.block, entry.ksn
            self.log("pin_entered", digits=entry.digits)
            self.fire("pin_entered")
            request = transactions.balance_inquiry(
                self.config, self.card, self._pin_block, self._pin_ksn
            ) | {"62": self._location()}
            response = await self._exchange(request)
            code = response["39"]
            if code == "00":
                try:
                    self._limits = decode_amounts(response.get("54", ""))
                except CodecError as exc:
                    self.log("host_error", error=str(exc))
                    self._host_unavailable()
                self.fire("pin_accepted")
                return
            if code == "55":
                self.display.show(Screen.WRONG_PIN)
                self.fire("pin_rejected")
                continue
            self._decline(code)

    def _menu(self) -> str:
        limit = money(self._limits.get(AmountType.WITHDRAWAL_LIMIT, 0))
        while True:
            if self.cash_available:
                self.display.show(Screen.MENU, limit=limit)
            else:
                self.display.show(Screen.MENU_BALANCE_ONLY)
            entry = self.devices.pinpad.read_keys(max_digits=0, timeout=self.config.timeouts.menu)
            self._customer_gave_up(entry.outcome, "menu")
            choice = MENU_KEYS.get(entry.keys)
            if choice == "withdrawal" and not self.cash_available:
                continue
            if choice is not None:
                self.log("menu", choice=choice)
                self.fire(f"{choice}_chosen")
                return choice

    def _show_balance(self) -> None:
        self.display.show(
            Screen.BALANCE,
            ledger=money(self._limits.get(AmountType.LEDGER_BALANCE, 0)),
            available=money(self._limits.get(AmountType.AVAILABLE_BALANCE, 0)),
        )
        self.log("balance_shown")
        entry = self.devices.pinpad.read_keys(max_digits=0, timeout=self.config.timeouts.balance)
        self._customer_gave_up(entry.outcome, "balance")
        self.fire("done")

    def _amount(self) -> int:
        limit = money(self._limits.get(AmountType.WITHDRAWAL_LIMIT, 0))
        dispenser = self.devices.dispenser
        while True:
            self.display.show(Screen.ENTER_AMOUNT, limit=limit)
            entry = self.devices.pinpad.read_keys(
                max_digits=6, timeout=self.config.timeouts.amount, function_keys=False
            )
            self._customer_gave_up(entry.outcome, "amount")
            amount = int(entry.keys or "0") * 100
            if amount > 0 and dispenser.can_dispense(amount):
                self.log("amount_entered", amount=amount)
                self.fire("amount_entered")
                return amount
            notes = sorted({money(c.denomination) for c in dispenser.cassettes() if c.count})
            self.display.show(Screen.CANNOT_DISPENSE, notes=", ".join(notes) or "none")
            self.log("amount_rejected", amount=amount)
            self.fire("amount_rejected")

    async def _authorise(self, amount: int) -> Message:
        assert self.card is not None
        request = self.host.stamp(
            transactions.withdrawal(self.config, self.card, self._pin_block, amount, self._pin_ksn)
            | {"62": self._location()}
        )
        self._pin_block = b""  # PCI PIN: not kept past the authorisation request
        # Durable before it leaves: after a crash, recovery knows a reversal may be owed.
        self.log("authorisation_request", durable=True, request=_original(request))
        self.display.show(Screen.PLEASE_WAIT)
        try:
            response = await self.host.request(request)
            _check_response(response)
            self._note_evidence(response)
        except (HostLinkError, CodecError) as exc:
            # The host may have approved before the link failed: undo whatever it did.
            self.log("host_error", error=str(exc))
            await self._reverse(request, dispensed=0)
            self._host_unavailable()
        self.result.response_code = response["39"]
        self.log("authorisation", durable=True, code=response["39"], rrn=response.get("37", ""))
        if response["39"] != "00":
            self._decline(response["39"])
        self.fire("approved")
        self._approved_request = _original(request)  # no PAN or PIN block kept past here
        return response

    async def _dispense(self, amount: int, response: Message) -> None:
        """Pay out an approved amount. Whatever the dispenser does (a fault it reports, an
        error it raises, notes left behind), the customer ends up debited exactly for
        what they took: the rest is reversed or advised through the durable queue."""
        dispenser = self.devices.dispenser
        self.log("dispensing", durable=True, amount=amount)
        try:
            result = dispenser.dispense(amount)
        except (DeviceError, LocalProtocolError) as exc:
            # approved, but the dispenser failed outright: nothing was handed over
            self.log("dispense_error", durable=True, error=str(exc))
            self._clear_dispenser()
            await self._reverse(self._approved_request, dispensed=0)
            self.display.show(Screen.DECLINED, reason="Unable to dispense cash.")
            self.fire("dispense_failed")
            raise _End("dispense_failed") from None
        self.log("stacked", durable=True, amount=result.amount)
        if not result.complete:
            self.log("dispense_fault", durable=True, stacked=result.amount, error=str(result.fault))
            if result.amount == 0:
                await self._reverse(self._approved_request, dispensed=0)
                self.display.show(Screen.DECLINED, reason="Unable to dispense cash.")
                self.fire("dispense_failed")
                raise _End("dispense_failed")
        self.fire("notes_stacked")
        self.display.show(Screen.TAKE_CASH)
        try:
            taken = dispenser.present(self.config.timeouts.take_cash)
        except (DeviceError, LocalProtocolError) as exc:
            # The exit sensor decides: notes gone means the customer has them.
            self.log("present_error", durable=True, error=str(exc))
            try:
                taken = not dispenser.notes_pending()
            except (DeviceError, LocalProtocolError):
                taken = False  # cannot tell: retract what may be there and reverse
        if taken:
            self.result.dispensed = result.amount
            self.log("cash_taken", durable=True, amount=result.amount)
            self.fire("cash_taken")
            if not result.complete:
                await self._reverse(self._approved_request, dispensed=result.amount)
            self.fire("done")
            raise _End("dispensed" if result.complete else "partial_dispense")
        self.fire("cash_not_taken")
        notes = self._clear_dispenser()
        self.log("cash_retracted", durable=True, notes=notes, amount=result.amount)
        await self._reverse(self._approved_request, dispensed=0)
        self.fire("retracted")
        raise _End("cash_retracted")

    def _clear_dispenser(self) -> int:
        """Retract whatever is left in the stacker or at the exit; how many notes."""
        dispenser = self.devices.dispenser
        try:
            return dispenser.retract() if dispenser.notes_pending() else 0
        except (DeviceError, LocalProtocolError) as exc:
            self.log("retract_failed", durable=True, error=str(exc))
            log.critical("notes may be left at the dispenser exit: %s", exc)
            return 0

    async def _reverse(self, request: Message, dispensed: int) -> None:
        """Queue the reversal durably, then try to deliver the queue now."""
        message = with_ksn(
            self.host.stamp(transactions.reversal(self.config, request, dispensed)),
            self.devices.pinpad,
        )
        self.saf.enqueue(message)
        self.log(
            "reversal", durable=True, mti=message["t"], stan=message["11"], dispensed=dispensed
        )
        if await self.saf.drain(self.host, force=True) and not self.saf.pending:
            self.log("reversal_acknowledged", stan=message["11"])
        else:
            self.log("reversal_queued", stan=message["11"], pending=self.saf.pending)

    def _location(self) -> str:
        """Field 62: GPS fix, else the configured site, else 'none' (see terminal.location)."""
        return current_location(self.devices.gps, self.config.site).field62()

    def _customer_gave_up(self, outcome: EntryOutcome, where: str) -> None:
        if outcome is EntryOutcome.ENTERED:
            return
        trigger = "cancel" if outcome is EntryOutcome.CANCELLED else "timeout"
        self.log(f"customer_{trigger}", at=where)
        self.fire(trigger)
        raise _End("cancelled" if trigger == "cancel" else "timeout")

    def _decline(self, code: str) -> NoReturn:
        rc = response_code(code)
        self.result.response_code = code
        self.log("declined", code=code, meaning=rc.meaning)
        if rc.retain_card:
            self.display.show(Screen.CARD_RETAINED)
            self.fire("pin_tries_exceeded")
            self._retain_card()
            raise _End("card_retained")
        self.display.show(Screen.DECLINED, reason=rc.customer_text)
        self.fire("declined")
        raise _End(f"declined:{code}")

    def _host_unavailable(self) -> NoReturn:
        self.display.show(Screen.DECLINED, reason="Service unavailable. Please try later.")
        self.fire("host_unavailable")
        raise _End("host_unavailable")

    async def _exchange(self, request: Message) -> Message:
        """A request that changes no money (0100): any link failure ends the session."""
        try:
            stamped = with_ksn(self.host.stamp(request), self.devices.pinpad)
            response = await self.host.request(stamped)
            _check_response(response)
            self._note_evidence(response)
            return response
        except (HostLinkError, CodecError) as exc:
            self.log("host_error", error=str(exc))
            self._host_unavailable()

    def _return_card(self) -> None:
        if self.fsm.state is State.CARD_RETAINED:
            self.fire("card_captured")
            return
        self.display.show(Screen.TAKE_CARD)
        try:
            taken = self.devices.card_reader.eject(self.config.timeouts.take_card)
        except DeviceError as exc:
            self.log("card_eject_failed", error=str(exc))
            taken = False
        if taken:
            self.log("card_returned")
            self.fire("card_taken")
            return
        self.fire("card_not_taken")
        self._retain_card()
        self.fire("card_captured")

    def _retain_card(self) -> None:
        try:
            self.devices.card_reader.retain()
        except AtmError as exc:
            self.log("card_retain_failed", error=str(exc))
        self.result.card_retained = True
        self.log("card_retained")

    def _receipt(self) -> None:
        lines = [
            f"Terminal {self.config.terminal_id}  {self.config.location.strip()}",
            f"Card {self.result.masked_pan or '-'}",
            f"Result {self.result.outcome}",
        ]
        if self.result.dispensed:
            lines.append(f"Cash dispensed {money(self.result.dispensed)}")
        if AmountType.AVAILABLE_BALANCE in self._limits and self.result.outcome == "balance_shown":
            lines.append(f"Available {money(self._limits[AmountType.AVAILABLE_BALANCE])}")
        receipt = " | ".join(lines)
        self.display.show(Screen.RECEIPT, receipt=receipt)
        self.log("receipt", text=receipt)
        self.fire("session_ended")


def _check_response(response: Message) -> None:
    """A response without a well-formed response code is no response at all."""
    code = response.get("39", "")
    if len(code) != 2 or not code.isalnum():
        raise CodecError(f"response {response.get('t')} has no valid response code", field="39")


# The fields of a request that a reversal or advice needs (field 90 and amounts): no card data.
ORIGINAL_FIELDS = ("t", "3", "4", "7", "11", "32", "49")


def _original(request: Message) -> dict[str, str]:
    return {k: request[k] for k in ORIGINAL_FIELDS if k in request}
