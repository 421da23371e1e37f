"""Customer scripts: what a customer does at the terminal, as data.

A :class:`Scenario` names a card from the host seed and the customer's inputs in order;
:func:`apply` loads them into the simulated devices before the card goes in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from terminal.drivers.card_reader.base import CardData
from terminal.drivers.pinpad.sim import CANCEL, NO_INPUT, Fkey, Keys, Pin, Signal

Entry = Pin | Keys | Fkey | Signal
WITHDRAW, BALANCE, CONTINUE = Fkey("F1"), Fkey("F2"), Keys("")


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    card: str  # card holder's name as in the seed's cards[].name, or a PAN
    entries: Sequence[Entry]
    expected: str  # the session outcome the scenario must produce
    expected_dispensed: int = 0
    take_cash: bool = True
    take_card: bool = True
    unreadable: str | None = None


DEMO: tuple[Scenario, ...] = (
    Scenario(
        "withdrawal",
        "ALICE ARDEN",
        [Pin("1234"), WITHDRAW, Keys("100")],
        "dispensed",
        10_000,
    ),
    Scenario("balance inquiry", "ALICE ARDEN", [Pin("1234"), BALANCE, CONTINUE], "balance_shown"),
    Scenario(
        "wrong PIN then right PIN",
        "ALICE ARDEN",
        [Pin("1111"), Pin("1234"), WITHDRAW, Keys("60")],
        "dispensed",
        6_000,
    ),
    Scenario(
        "insufficient funds", "BOB BRANDT", [Pin("4321"), WITHDRAW, Keys("100")], "declined:51"
    ),
    Scenario(
        "PIN tries exceeded, card retained",
        "CAROL CHO",
        [Pin("1111"), Pin("2222"), Pin("3333")],
        "card_retained",
    ),
    Scenario(
        "cash not taken, retracted and reversed",
        "ALICE ARDEN",
        [Pin("1234"), WITHDRAW, Keys("200")],
        "cash_retracted",
        take_cash=False,
    ),
    Scenario(
        "amount over the daily limit",
        "DAVE DORN",
        [Pin("9753"), WITHDRAW, Keys("400")],
        "declined:61",
    ),
    Scenario("expired card", "4761739001010044", [Pin("9753")], "declined:54"),
    Scenario("customer cancels at the menu", "DAVE DORN", [Pin("9753"), CANCEL], "cancelled"),
    Scenario("customer walks away at PIN entry", "DAVE DORN", [NO_INPUT], "timeout"),
    Scenario(
        "amount not dispensable, then a good one",
        "DAVE DORN",
        [Pin("9753"), WITHDRAW, Keys("15"), Keys("250")],
        "dispensed",
        25_000,
    ),
    Scenario("unreadable card", "DAVE DORN", [], "card_unreadable", unreadable="chip mute"),
    Scenario(
        "duress PIN: a normal-looking session, capped, silent alarm",
        "ERIN EBERT",
        [Pin("0852"), WITHDRAW, Keys("250")],
        "dispensed",
        25_000,
    ),
)
# Sessions that must raise a silent alarm (by card), for the demo's checks.
DURESS_CARDS = ("ERIN EBERT",)


class CardCustomer(Protocol):
    def insert(self, card: CardData | None = None, *, unreadable: str | None = None) -> None: ...

    def script_take_card(self, taken: bool) -> None: ...


class PinPadCustomer(Protocol):
    def script(self, *entries: Entry) -> None: ...

    def pending(self) -> int: ...

    def clear_script(self) -> int: ...


class DispenserCustomer(Protocol):
    def script_take_cash(self, taken: bool) -> None: ...

    @property
    def handed_out_amount(self) -> int: ...


@dataclasses.dataclass
class Customer:
    """The far side of each device, where a scripted customer acts: the in-process sim
    devices themselves, or the emulators behind ptys (same scripting methods)."""

    reader: CardCustomer
    pinpad: PinPadCustomer
    dispenser: DispenserCustomer


def apply(scenario: Scenario, customer: Customer, card: CardData) -> None:
    """Load the customer's actions into the devices and insert the card.

    Taking cash and card is the devices' default, so only a refusal is scripted: a
    scripted "take" that the session never reaches would leak into the next session.
    """
    customer.pinpad.script(*scenario.entries)
    if not scenario.take_cash:
        customer.dispenser.script_take_cash(False)
    if not scenario.take_card:
        customer.reader.script_take_card(False)
    customer.reader.insert(None if scenario.unreadable else card, unreadable=scenario.unreadable)
