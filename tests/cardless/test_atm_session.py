"""The ATM's own cardless session (terminal/session/cardless.py, simulated devices, real MACed
TCP link) collects a reservation made through the phone service of the same host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atm_common.face.verify import FaceTemplate
from sim.host.cardless.phone import PhoneBank
from terminal.cli.interactive import serve_prompted
from terminal.drivers.pinpad.sim import Fkey, Keys, Pin
from tests.cardless.helpers import FRANK_DEBIT, FRANK_PHONE, reserve
from tests.conftest import Rig
from tests.wal import terminal_commits


def test_the_terminal_collects_with_the_code(
    with_rig: Callable[..., Any], template: Callable[[str], FaceTemplate]
) -> None:
    probe = template("obama2.jpg")

    async def body(rig: Rig) -> None:
        bank = PhoneBank(rig.host.authoriser.cardless)
        reservation = reserve(bank, probe, amount=6_000)  # 3 x 20.00 notes
        before = rig.host.authoriser.ledger.balance(FRANK_DEBIT)
        wrong = "999999" if reservation["code"] != "999999" else "111111"
        digits = FRANK_PHONE.lstrip("+")
        # A wrong code first (the host answers 55, the ATM asks again), then the right one.
        rig.pinpad.script(Keys(digits), Fkey("F1"), Pin(wrong), Pin(str(reservation["code"])))
        result = await rig.terminal.serve_cardless()
        assert result is not None, rig.terminal.out_of_service_reason
        assert result.dispensed == 6_000, result
        assert result.response_code == "00"
        after = rig.host.authoriser.ledger.balance(FRANK_DEBIT)
        assert after.ledger == before.ledger - 6_000 - 200
        assert after.available == after.ledger
        row = rig.host.authoriser.conn.execute(
            "SELECT status, attempts, terminal_id FROM reservations WHERE id = ?",
            (reservation["reservation_id"],),
        ).fetchone()
        assert tuple(row) == ("used", 1, rig.terminal.config.terminal_id)
        assert rig.host.authoriser.ledger.check() == []

    with_rig(body)


def test_cardless_at_the_run_prompt_collects_the_reservation(
    with_rig: Callable[..., Any], template: Callable[[str], FaceTemplate]
) -> None:
    """``atm run --sim``: typing ``cardless`` at the card prompt runs the cardless session."""
    probe = template("obama2.jpg")

    async def body(rig: Rig) -> None:
        reservation = reserve(PhoneBank(rig.host.authoriser.cardless), probe, amount=4_000)
        before = rig.host.authoriser.ledger.balance(FRANK_DEBIT).ledger
        inputs = f"{FRANK_PHONE.lstrip('+')}, F1, pin {reservation['code']}"
        result = await serve_prompted(rig.terminal, "cardless", "", inputs)
        assert result is not None, rig.terminal.out_of_service_reason
        assert (result.response_code, result.dispensed) == ("00", 4_000)
        assert rig.host.authoriser.ledger.balance(FRANK_DEBIT).ledger < before - 4_000  # + fee
        assert rig.reader.card_present is False  # no card was ever involved

    with_rig(body)


def test_a_cardless_withdrawal_commits_at_its_points_of_no_return_only(
    with_rig: Callable[..., Any], template: Callable[[str], FaceTemplate]
) -> None:
    """Same cash path as a card: the journal commits before the 0200, before and after
    the dispense, and at the end (docs/durability.md); counted in SQLite's own logs."""
    probe = template("obama2.jpg")

    async def body(rig: Rig) -> None:
        reservation = reserve(PhoneBank(rig.host.authoriser.cardless), probe, amount=4_000)
        rig.pinpad.script(Keys(FRANK_PHONE.lstrip("+")), Fkey("F1"), Pin(str(reservation["code"])))
        count = terminal_commits(rig.terminal.config.journal)
        count.start()
        result = await rig.terminal.serve_cardless()
        assert result is not None and result.dispensed == 4_000, result
        assert count.stop()["journal.db"] == 4
        assert count.total <= 8

    with_rig(body)
