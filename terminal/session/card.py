"""The card session: card in, PIN, menu, then a balance or the shared cash path, card out.

The PIN is verified up front with a balance inquiry (0100), whose answer also carries the
limits shown on the menu; a withdrawal is then authorised and paid out by the session's
:class:`~terminal.session.cash.CashPath`. What is the card session's alone lives here:
reading the card, the PIN retries, the menu and amount screens, and giving the card back
(or retaining it, when the issuer says so or the customer leaves it behind).
"""

from __future__ import annotations

import logging
from typing import Any

from atm_common.errors import AtmError
from host_link.amounts import AmountType, decode_amounts
from host_link.codec import Message
from host_link.codes import ResponseCode
from host_link.errors import CodecError
from terminal import transactions
from terminal.drivers.card_reader.base import CardData, CardUnreadable
from terminal.errors import DeviceError
from terminal.fsm.customer import State
from terminal.session.base import CustomerSession, SessionEnd
from terminal.session.binding import PaymentAppBinding
from terminal.session.cash import CashPath
from terminal.session.corporate import Corporate
from terminal.session.joint import JointPath
from terminal.ui import Screen

log = logging.getLogger(__name__)

MENU_KEYS = {"F1": "withdrawal", "F2": "balance", "F3": "bind"}


class CardSession(CustomerSession):
    """A session begun by a card in the reader."""

    START = "card_inserted"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.card: CardData | None = None
        self._limits: dict[AmountType, int] = {}
        self.cash = CashPath(self)
        self.corporate = Corporate(self, self.inquiry)  # a corporate card's role and fund account
        self.joint = JointPath(
            self, self.cash
        )  # a card on a joint account (terminal/session/joint.py)

    async def transact(self) -> None:
        self._read_card()
        await self._verify_pin()
        if self.corporate.offer is not None:
            choice, self._limits = await self.corporate.choose()
        else:
            choice = self._menu()
        if choice == "balance":
            if self.joint.active:
                await self._joint_balance()
            self._show_balance()
            raise SessionEnd("balance_shown")
        if choice == "bind":  # payment-app binding: terminal/session/binding.py
            self.display.show(Screen.BINDING_WAIT)
            assert self.card is not None
            await PaymentAppBinding(self, self.card).run()
        amount = self._amount()
        assert self.card is not None
        request = (
            transactions.withdrawal(self.config, self.card, self._pin_block, amount, self._pin_ksn)
            | {"62": self.location()}
            | self.corporate.fields()
        )
        if self.joint.active:
            request = await self.joint.approved(request | self.joint.field(), self.inquiry())
            self.fire("co_owner_approved")
        await self.cash.authorise(self.host.stamp(request), note_evidence=True)
        await self.cash.dispense(amount)

    def _read_card(self) -> None:
        """Read the card, unless the terminal already did (to tell a supervisor card)."""
        try:
            if self.card is None:
                self.card = self.devices.card_reader.read_card()
        except CardUnreadable as exc:
            self.log("card_unreadable", reason=str(exc))
            self.display.show(Screen.DECLINED, reason="This card cannot be read.")
            self.fire("card_unreadable")
            raise SessionEnd("card_unreadable") from None
        self.result.masked_pan = self.card.masked_pan
        self.log("card_read", pan=self.card.pan, expiry=self.card.expiry)
        self.fire("card_read")

    async def _verify_pin(self) -> None:
        """PIN entry until the host accepts it (0100 balance inquiry), or the session ends."""
        assert self.card is not None
        while True:
            self.display.show(Screen.ENTER_PIN)
            entry = self.devices.pinpad.read_pin(self.card.pan, timeout=self.config.timeouts.pin)
            self.customer_gave_up(entry.outcome, "pin")
            self._pin_block, self._pin_ksn = entry.block, entry.ksn
            self.log("pin_entered", digits=entry.digits)
            self.fire("pin_entered")
            response = await self.exchange(self.inquiry() | self.joint.field())
            if response["39"] == "1A" and not self.joint.active:
                self.joint.read_code(self.card.pan)  # a joint account: the co-owner's own code too
                response = await self.exchange(self.inquiry() | self.joint.field())
            code = response["39"]
            if code == "00":
                try:
                    self._limits = decode_amounts(response.get("54", ""))
                except CodecError as exc:
                    self.log("host_error", error=str(exc))
                    self.host_unavailable()
                if self.corporate.offered(response):
                    return  # a corporate card: the role is chosen next (corporate.py)
                self.fire("pin_accepted")
                return
            if code == "55":
                self.joint.forget()  # both again: the host does not say which was wrong
                self.display.show(Screen.WRONG_PIN)
                self.fire("pin_rejected")
                continue
            self.decline(code)

    def inquiry(self) -> Message:
        """A 0100 with the session's PIN block: the PIN check, and a corporate card's
        role and account questions (with the fields :class:`Corporate` adds)."""
        assert self.card is not None
        return transactions.balance_inquiry(
            self.config, self.card, self._pin_block, self._pin_ksn
        ) | {"62": self.location()}

    async def _joint_balance(self) -> None:
        """A balance on a joint account, once another co-owner approved it."""
        request = await self.joint.approved(
            self.inquiry() | self.joint.field(OP="B"), self.inquiry()
        )
        response = await self.exchange(request)
        if response["39"] != "00":
            self.decline(response["39"])
        try:
            self._limits = decode_amounts(response.get("54", ""))
        except CodecError as exc:
            self.log("host_error", error=str(exc))
            self.host_unavailable()
        self.fire("balance_approved")

    def forget_pin(self) -> None:
        super().forget_pin()
        self.joint.forget()

    def _menu(self) -> str:
        limit = self.money(self._limits.get(AmountType.WITHDRAWAL_LIMIT, 0))
        while True:
            if self.cash_available:
                self.display.show(Screen.MENU, limit=limit)
            else:
                self.display.show(Screen.MENU_BALANCE_ONLY)
            entry = self.devices.pinpad.read_keys(max_digits=0, timeout=self.config.timeouts.menu)
            self.customer_gave_up(entry.outcome, "menu")
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
            ledger=self.money(self._limits.get(AmountType.LEDGER_BALANCE, 0)),
            available=self.money(self._limits.get(AmountType.AVAILABLE_BALANCE, 0)),
        )
        self.log("balance_shown")
        entry = self.devices.pinpad.read_keys(max_digits=0, timeout=self.config.timeouts.balance)
        self.customer_gave_up(entry.outcome, "balance")
        self.fire("done")

    def _amount(self) -> int:
        """Whole units until the dispenser can make the amount up from its notes."""
        limit = self.money(self._limits.get(AmountType.WITHDRAWAL_LIMIT, 0))
        dispenser = self.devices.dispenser
        while True:
            self.display.show(Screen.ENTER_AMOUNT, limit=limit)
            entry = self.devices.pinpad.read_keys(
                max_digits=6, timeout=self.config.timeouts.amount, function_keys=False
            )
            self.customer_gave_up(entry.outcome, "amount")
            amount = int(entry.keys or "0") * 100
            most = self._limits.get(AmountType.WITHDRAWAL_LIMIT)
            over = most is not None and amount > most
            # Over the limit shown, the host's decline names the real cause (61 limit,
            # 51 funds) and it is the same decline a duress session gets; the notes are
            # the cause only for an amount the customer may have.
            if amount > 0 and (over or dispenser.can_dispense(amount)):
                self.log("amount_entered", amount=amount)
                self.fire("amount_entered")
                return amount
            notes = sorted({self.money(c.denomination) for c in dispenser.cassettes() if c.count})
            self.display.show(Screen.CANNOT_DISPENSE, notes=", ".join(notes) or "none")
            self.log("amount_rejected", amount=amount, reason="notes")
            self.fire("amount_rejected")

    def decline_specially(self, code: str, rc: ResponseCode) -> None:
        """The issuer may tell us to keep the card (PIN tries exceeded, stolen ...)."""
        if rc.retain_card:
            self.display.show(Screen.CARD_RETAINED)
            self.fire("pin_tries_exceeded")
            self._retain_card()
            raise SessionEnd("card_retained")

    def hand_back(self) -> None:
        """Eject the card; retain it if the customer leaves it, or if already retained.
        Nothing to do when it already came back before the cash."""
        if self.fsm.state is State.RECEIPT:
            return
        if self.fsm.state is State.CARD_RETAINED:
            self.fire("card_captured")
            return
        if self._eject():
            return
        self._retain_card()
        self.fire("card_captured")

    def card_before_cash(self) -> bool:
        """Notes are stacked: the card comes back first, then the cash is presented."""
        if self._eject():
            return True
        self._retain_card()
        return False

    def _eject(self) -> bool:
        """Offer the card back; fires card_taken or card_not_taken."""
        self.display.show(Screen.TAKE_CARD)
        try:
            taken = self.devices.card_reader.eject(self.config.timeouts.take_card)
        except DeviceError as exc:
            self.log("card_eject_failed", error=str(exc))
            taken = False
        if taken:
            self.log("card_returned")
            self.fire("card_taken")
            return True
        self.fire("card_not_taken")
        return False

    def _retain_card(self) -> None:
        try:
            self.devices.card_reader.retain()
        except AtmError as exc:
            self.log("card_retain_failed", error=str(exc))
        self.result.card_retained = True
        self.log("card_retained")

    def receipt_customer(self) -> str:
        return f"Card {self.result.masked_pan or '-'}"

    def receipt_extras(self) -> list[str]:
        if AmountType.AVAILABLE_BALANCE in self._limits and self.result.outcome == "balance_shown":
            return [f"Available {self.money(self._limits[AmountType.AVAILABLE_BALANCE])}"]
        return []
