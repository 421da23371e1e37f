"""Sessions book their cash movements in the cassette counters balancing reads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sim.scenarios.scripts import WITHDRAW, Scenario
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.session.base import CustomerSession
from terminal.session.cash import CashPath
from terminal.supervisor.counters import CashCounters
from tests.conftest import Rig


def test_cash_not_taken_is_booked_as_retracted_and_balancing_counts_it(
    with_rig: Any, tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        dispenser = rig.terminal.devices.dispenser
        cassettes = dispenser.cassettes()
        counters = CashCounters(tmp_path / "cash.db")
        counters.configure([(c.index, c.denomination, 2_000) for c in cassettes])
        counters.load({c.index: c.count for c in cassettes})
        before = sum(c.found_amount for c in counters.cassettes())
        rig.terminal.cash_counters = counters
        try:
            left = Scenario(
                "leave", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "cash_retracted",
                take_cash=False,
            )  # fmt: skip
            assert (await rig.play(left)).outcome == "cash_retracted"
            taken = Scenario(
                "take", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("40")], "dispensed"
            )
            assert (await rig.play(taken)).outcome == "dispensed"
            counters.sync({c.index: c.count for c in dispenser.cassettes()})
            books = counters.cassettes()
            # the 100.00 left the cassettes and sits in the retract bin: still the bank's
            assert sum(c.retracted * c.denomination for c in books) == 10_000
            # what the counters say is in the machine: all but the 40.00 the customer took
            assert sum(c.found_amount for c in books) == before - 4_000
            assert all(
                c.remaining == now.count
                for c, now in zip(books, dispenser.cassettes(), strict=True)
            )
        finally:
            rig.terminal.cash_counters = None
            counters.close()

    with_rig(body)


class _Dispenser:
    """Retracts ``moved`` notes: the customer took the rest of the stack."""

    def __init__(self, moved: int) -> None:
        self.moved = moved

    def notes_pending(self) -> bool:
        return True

    def retract(self) -> int:
        return self.moved


class _Books:
    def __init__(self) -> None:
        self.retracted: dict[int, int] = {}

    def record(
        self, position: int, *, dispensed: int = 0, rejected: int = 0, retracted: int = 0
    ) -> None:
        self.retracted[position] = self.retracted.get(position, 0) + retracted


def test_a_retract_books_no_more_notes_than_it_moved() -> None:
    books = _Books()
    for moved, booked in ((3, {1: 2, 2: 1}), (6, {1: 2, 2: 4}), (1, {1: 1}), (0, {})):
        books.retracted.clear()
        session = SimpleNamespace(
            devices=SimpleNamespace(dispenser=_Dispenser(moved)), cash_counters=books
        )
        path = CashPath(cast(CustomerSession, session))
        assert path.clear_dispenser({1: 2, 2: 4}) == moved
        assert books.retracted == booked, moved
