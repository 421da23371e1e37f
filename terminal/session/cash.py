"""The cash path both kinds of session share: authorise, dispense, present, and undo.

Card and cardless withdrawals differ in how the customer proves who they are and in how
the 0200 is built; from the moment that request exists they must behave alike, because
this is where money moves and where a customer could be debited for cash they never got.
So the path is one object each session owns (composition, not inheritance): the session
builds the request and hands it over; :class:`CashPath` sends it, reverses it when the
answer is in doubt, drives the dispenser, and makes sure that whatever the dispenser
does the customer ends up debited for exactly what they took. Every ending it reaches
fires the same triggers for both sessions; the state table's guards decide where each
leads (back to the card reader, or with no card to the receipt).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import NoReturn

from atm_common.errors import LocalProtocolError
from host_link.codec import Message
from host_link.codes import response_code
from host_link.errors import CodecError, HostLinkError
from terminal import transactions
from terminal.errors import DeviceError
from terminal.link_security import with_ksn
from terminal.session.base import CustomerSession, SessionEnd, check_response, original_fields
from terminal.ui import Screen

log = logging.getLogger(__name__)


class CashPath:
    """Authorisation and payout for ``session``; keeps only :attr:`approved_request`."""

    def __init__(self, session: CustomerSession) -> None:
        self.session = session
        # The approved 0200 without card data (original_fields): what a reversal needs.
        self.approved_request: Message = {}

    async def authorise(self, request: Message, *, note_evidence: bool) -> Message:
        """Send the stamped withdrawal ``request``; return the approval or end the session.

        Durable in the journal before it leaves: after a crash, recovery knows a reversal
        may be owed. A link or format failure after sending is reversed at once, since
        the host may have approved before the answer was lost. ``note_evidence``: the card
        session reads a snapshot request in the answer (duress); the cardless one never has.
        """
        session = self.session
        session.forget_pin()  # PCI PIN: not kept past the authorisation request
        session.log("authorisation_request", durable=True, request=original_fields(request))
        session.display.show(Screen.PLEASE_WAIT)
        try:
            response = await session.host.request(request)
            check_response(response)
            if note_evidence:
                session.note_evidence(response)
        except (HostLinkError, CodecError) as exc:
            # The host may have approved before the link failed: undo whatever it did.
            session.log("host_error", error=str(exc))
            await self.reverse(request, dispensed=0)
            session.host_unavailable()
        if response_code(response["39"]).in_doubt:
            # 30/63/96: the host did not say what it did with our money-moving request.
            # Treat it as no answer at all; the reversal undoes whatever may have happened.
            session.log("host_error", error=f"answer {response['39']} leaves the outcome in doubt")
            await self.reverse(request, dispensed=0)
            session.host_unavailable()
        session.result.response_code = response["39"]
        # An approval is made durable by the "dispensing" commit that follows it at once
        # (a crash between them finds only the request: reversed, as it must be). A decline
        # is committed now: the session may wait a while for the card to be taken, and a
        # crash then must not send a (harmless but needless) reversal of a declined request.
        approved = response["39"] == "00"
        session.log(
            "authorisation", durable=not approved, code=response["39"], rrn=response.get("37", "")
        )
        if not approved:
            session.decline(response["39"])
        session.fire("approved")
        session.note_approval(request, response)
        self.approved_request = original_fields(request)  # no PAN or PIN block kept past here
        return response

    async def dispense(self, amount: int) -> NoReturn:
        """Pay out an approved amount. Whatever the dispenser does (a fault it reports, an
        error it raises, notes left behind), the customer ends up debited exactly for
        what they took: the rest is reversed or advised through the durable queue."""
        session = self.session
        dispenser = session.devices.dispenser
        session.log("dispensing", durable=True, amount=amount)
        try:
            result = dispenser.dispense(amount)
        except (DeviceError, LocalProtocolError) as exc:
            # approved, but the dispenser failed outright: nothing was handed over
            session.log("dispense_error", durable=True, error=str(exc))
            self.clear_dispenser()
            await self._not_dispensed()
        session.log("stacked", durable=True, amount=result.amount)
        if not result.complete:
            session.log(
                "dispense_fault", durable=True, stacked=result.amount, error=str(result.fault)
            )
            if result.amount == 0:
                await self._not_dispensed()
        session.fire("notes_stacked")
        if not session.card_before_cash():
            # The card was left and retained: the cash is never presented.
            notes = self.clear_dispenser(result.notes)
            session.log("cash_retracted", durable=True, notes=notes, amount=result.amount)
            await self.reverse(self.approved_request, dispensed=0)
            session.fire("card_captured")
            raise SessionEnd("card_retained")
        session.display.show(Screen.TAKE_CASH)
        try:
            taken = dispenser.present(session.config.timeouts.take_cash)
        except (DeviceError, LocalProtocolError) as exc:
            # The exit sensor decides: notes gone means the customer has them.
            session.log("present_error", durable=True, error=str(exc))
            try:
                taken = not dispenser.notes_pending()
            except (DeviceError, LocalProtocolError):
                taken = False  # cannot tell: retract what may be there and reverse
        if taken:
            session.result.dispensed = result.amount
            # Not a commit of its own: "stacked" is durable and the notes are gone, which is
            # all recovery needs to know the customer has them; the session's end commits it.
            session.log("cash_taken", amount=result.amount)
            session.fire("cash_taken")
            if not result.complete:
                await self.reverse(self.approved_request, dispensed=result.amount)
            session.fire("done")
            raise SessionEnd("dispensed" if result.complete else "partial_dispense")
        session.fire("cash_not_taken")
        notes = self.clear_dispenser(result.notes)
        session.log("cash_retracted", durable=True, notes=notes, amount=result.amount)
        await self.reverse(self.approved_request, dispensed=0)
        session.fire("retracted")
        raise SessionEnd("cash_retracted")

    async def _not_dispensed(self) -> NoReturn:
        """Approved but nothing handed over: reverse it all and end the session."""
        await self.reverse(self.approved_request, dispensed=0)
        self.session.display.show(Screen.DECLINED, reason="Unable to dispense cash.")
        self.session.fire("dispense_failed")
        raise SessionEnd("dispense_failed")

    def clear_dispenser(self, stacked: Mapping[int, int] | None = None) -> int:
        """Retract whatever is left in the stacker or at the exit; how many notes.
        ``stacked``: the notes per cassette this dispense stacked, booked as retracted in
        the cassette counters when they go to the retract bin (balancing counts them there):
        at most the notes the retract moved (a customer may have taken some), spread over
        the stacked cassettes in order."""
        dispenser = self.session.devices.dispenser
        try:
            moved = dispenser.retract() if dispenser.notes_pending() else 0
        except (DeviceError, LocalProtocolError) as exc:
            self.session.log("retract_failed", durable=True, error=str(exc))
            log.critical("notes may be left at the dispenser exit: %s", exc)
            return 0
        counters = self.session.cash_counters
        if moved and stacked and counters is not None:
            left = moved
            for position, notes in stacked.items():
                if (booked := min(notes, left)) > 0:
                    counters.record(position, retracted=booked)
                    left -= booked
        return moved

    async def reverse(self, request: Message, dispensed: int) -> None:
        """Queue the reversal durably, then try to deliver the queue now."""
        session = self.session
        message = with_ksn(
            session.host.stamp(transactions.reversal(session.config, request, dispensed)),
            session.devices.pinpad,
        )
        session.saf.enqueue(message)
        session.log(
            "reversal", durable=True, mti=message["t"], stan=message["11"], dispensed=dispensed
        )
        if await session.saf.drain(session.host, force=True) and not session.saf.pending:
            session.log("reversal_acknowledged", stan=message["11"])
        else:
            session.log("reversal_queued", stan=message["11"], pending=session.saf.pending)
