"""Customer sessions against a real host over TCP, on simulated devices."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

import pytest

from host_link.codec import Message
from sim.scenarios.scripts import BALANCE, DEMO, WITHDRAW, Scenario
from terminal.config import SiteLocation
from terminal.drivers.gps.sim import SimGps
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.errors import DeviceTimeout
from terminal.fsm.customer import State
from terminal.ui import RecordingDisplay, Screen
from tests.conftest import Rig

ALICE = "1000000001"


@pytest.mark.parametrize("scenario", DEMO, ids=[s.name for s in DEMO])
def test_demo_scenarios(with_rig: Any, scenario: Scenario) -> None:
    async def body(rig: Rig) -> None:
        _, account = rig.cards[scenario.card]
        before = rig.balance(account)
        result = await rig.play(scenario)
        assert result.outcome == scenario.expected
        assert result.dispensed == scenario.expected_dispensed
        assert rig.balance(account) == before - scenario.expected_dispensed
        assert result.states[-1] == "idle"
        assert rig.terminal.state is State.IDLE
        assert rig.pinpad.pending() == 0

    with_rig(body)


def test_withdrawal_path_screens_and_receipt(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        result = await rig.play(
            Scenario("w", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("40")], "dispensed", 4000)
        )
        assert result.states == [
            "reading_card",
            "pin_entry",
            "verifying_pin",
            "menu",
            "amount_entry",
            "authorising",
            "dispensing",
            "card_before_cash",
            "presenting",
            "cash_taken",
            "receipt",
            "idle",
        ]
        assert result.masked_pan == "476173******0010"
        display = rig.terminal.display
        assert isinstance(display, RecordingDisplay)
        screens = [s for s, _ in display.shown]
        assert (
            screens.index(Screen.ENTER_PIN)
            < screens.index(Screen.MENU)
            < screens.index(Screen.TAKE_CARD)  # the card comes back before the cash
            < screens.index(Screen.TAKE_CASH)
        )
        menu = next(v for s, v in display.shown if s is Screen.MENU)
        assert menu["limit"] == "1000.00"  # daily limit below the 2500.00 balance
        receipt = display.texts()[-1]
        assert "476173******0010" in receipt and "Cash dispensed 40.00" in receipt
        assert "4761739001010010" not in " ".join(display.texts())

    with_rig(body)


def test_balance_shows_host_figures(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        await rig.play(
            Scenario("b", "BOB BRANDT", [Pin("4321"), BALANCE, Keys("")], "balance_shown")
        )
        display = rig.terminal.display
        assert isinstance(display, RecordingDisplay)
        balance = next(v for s, v in display.shown if s is Screen.BALANCE)
        assert balance == {"ledger": "50.00", "available": "50.00"}

    with_rig(body)


def test_journal_has_every_step_and_no_secrets(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        await rig.play(
            Scenario(
                "w",
                "ALICE ARDEN",
                [Pin("1111"), Pin("1234"), WITHDRAW, Keys("20")],
                "dispensed",
                2000,
            )
        )
        entries = rig.terminal.journal.tail(200)
        events = [e.event for e in entries]
        for event in (
            "card_read",
            "pin_entered",
            "menu",
            "amount_entered",
            "authorisation",
            "cash_taken",
            "card_returned",
            "receipt",
            "session_end",
        ):
            assert event in events
        raw = " ".join(f"{e.event} {e.data}" for e in entries)
        assert "4761739001010010" not in raw and "476173******0010" in raw

    with_rig(body)


def test_journal_file_holds_no_pan_or_pin_block(with_rig: Any, tmp_path: Any) -> None:
    blocks: list[str] = []

    async def body(rig: Rig) -> None:
        original = rig.host.authoriser.handle

        def spy(request: Message, peer: str = "") -> Message | None:
            if "52" in request:
                blocks.append(request["52"])
            return original(request, peer)

        rig.host.authoriser.handle = spy  # type: ignore[method-assign]
        await rig.play(DEMO[0])

    with_rig(body)
    assert blocks
    for path in tmp_path.glob("journal.db*"):
        data = path.read_bytes()
        assert b"4761739001010010" not in data
        for block in blocks:
            assert block.encode() not in data


def test_response_lost_after_host_approved_is_reversed(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        rig.terminal.host.timeout = 0.3
        original = rig.host.authoriser.handle

        def drop_0210(request: Message, peer: str = "") -> Message | None:
            response = original(request, peer)
            return None if request["t"] == "0200" else response

        rig.host.authoriser.handle = drop_0210  # type: ignore[method-assign]
        before = rig.balance(ALICE)
        result = await rig.play(
            Scenario(
                "lost", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "host_unavailable"
            )
        )
        assert result.outcome == "host_unavailable"
        assert result.dispensed == 0
        assert rig.balance(ALICE) == before
        events = [e.event for e in rig.terminal.journal.tail(100)]
        assert "reversal_acknowledged" in events

    with_rig(body)


def test_host_down_returns_card(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        await rig.host.stop()
        await rig.terminal.host.close()
        rig.terminal.host.port = 9  # discard port: nothing listens
        result = await rig.play(Scenario("down", "ALICE ARDEN", [Pin("1234")], "host_unavailable"))
        assert result.outcome == "host_unavailable"
        assert result.states[-3:] == ["returning_card", "receipt", "idle"]
        assert not rig.reader.card_present

    with_rig(body)


def test_pick_failure_reverses_and_offers_balance_only_until_repaired(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        before = rig.balance(ALICE)
        rig.dispenser.inject_pick_failure()
        result = await rig.play(
            Scenario("pick", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "dispense_failed")
        )
        assert result.outcome == "dispense_failed"
        assert rig.balance(ALICE) == before
        assert rig.terminal.state is State.IDLE and not rig.terminal.cash_available
        # a customer now sees the balance-only menu; F1 does nothing, F2 works
        scenario = Scenario(
            "b", "ALICE ARDEN", [Pin("1234"), WITHDRAW, BALANCE, Keys("")], "balance_shown"
        )
        assert (await rig.play(scenario)).outcome == "balance_shown"
        display = rig.terminal.display
        assert isinstance(display, RecordingDisplay)
        assert any(s is Screen.MENU_BALANCE_ONLY for s, _ in display.shown)
        # the field engineer clears the fault: cash is offered again, no restart
        rig.dispenser.reset()
        assert rig.terminal.check_devices() and rig.terminal.cash_available
        assert (await rig.play(DEMO[0])).outcome == "dispensed"

    with_rig(body)


def test_without_dispenser_out_of_service_by_config(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        rig.terminal.config = dataclasses.replace(
            rig.terminal.config, without_dispenser="out_of_service"
        )
        rig.dispenser.inject_pick_failure()
        await rig.play(
            Scenario("pick", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "dispense_failed")
        )
        assert rig.terminal.state is State.OUT_OF_SERVICE
        rig.dispenser.reset()
        assert rig.terminal.check_devices()
        assert rig.terminal.state is State.IDLE

    with_rig(body)


def test_every_request_carries_the_location(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        seen: list[Message] = []
        original = rig.host.authoriser.handle

        def spy(request: Message, peer: str = "") -> Message | None:
            seen.append(dict(request))
            return original(request, peer)

        rig.host.authoriser.handle = spy  # type: ignore[method-assign]
        await rig.play(DEMO[0])
        financial = [m for m in seen if m["t"] in ("0100", "0200")]
        assert financial and all(
            m["62"] == "SRC=site;LAT=52.520000;LON=13.405000" for m in financial
        )
        rig.terminal.config = dataclasses.replace(rig.terminal.config, site=None)
        seen.clear()
        await rig.play(DEMO[1])
        assert seen[0]["62"] == "SRC=none"  # a mobile terminal: the host asks the carrier
        rig.terminal.config = dataclasses.replace(
            rig.terminal.config, site=SiteLocation(52.52, 13.405)
        )
        gps = SimGps(rig.clock, lat=48.1, lon=11.5, satellites=9, hdop=0.8)
        gps.open()
        rig.terminal.devices.gps = gps
        seen.clear()
        await rig.play(DEMO[1])
        assert seen[0]["62"] == "SRC=gps;LAT=48.100000;LON=11.500000;AGE=0;Q=1;SAT=9;HDOP=0.8"
        gps.lose_fix()  # no fix: back to the site location
        seen.clear()
        await rig.play(DEMO[1])
        assert seen[0]["62"].startswith("SRC=site;")

    with_rig(body)


def test_jam_part_way_debits_exactly_what_was_handed_out(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        before = rig.balance(ALICE)
        rig.dispenser.inject_jam(after_notes=2)
        result = await rig.play(
            Scenario("jam", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("200")], "partial_dispense")
        )
        assert result.outcome == "partial_dispense"
        assert 0 < result.dispensed < 20000
        assert rig.dispenser.handed_out_amount == result.dispensed
        assert rig.balance(ALICE) == before - result.dispensed

    with_rig(body)


def test_card_not_taken_is_retained(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        scenario = dataclasses.replace(DEMO[1], take_card=False)
        result = await rig.play(scenario)
        assert result.card_retained
        assert result.states[-4:] == ["returning_card", "card_retained", "receipt", "idle"]
        assert len(rig.reader.retained) == 1

    with_rig(body)


def test_pin_tries_exceeded_retains_card_and_blocks_next_use(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        await rig.play(DEMO[4])
        assert len(rig.reader.retained) == 1
        again = await rig.play(Scenario("again", "CAROL CHO", [Pin("2468")], "card_retained"))
        assert again.outcome == "card_retained"
        row = rig.host.authoriser.conn.execute(
            "SELECT status FROM cards WHERE pan_masked LIKE '%0028'"
        ).fetchone()
        assert isinstance(row, sqlite3.Row) and row["status"] == "retained"

    with_rig(body)


@pytest.mark.parametrize("mti", ["0100", "0200"])
def test_response_without_a_response_code_is_no_response(with_rig: Any, mti: str) -> None:
    async def body(rig: Rig) -> None:
        original = rig.host.authoriser.handle

        def mangle(request: Message, peer: str = "") -> Message | None:
            response = original(request, peer)
            if response is not None and request["t"] == mti:
                response.pop("39")
            return response

        rig.host.authoriser.handle = mangle  # type: ignore[method-assign]
        before = rig.balance(ALICE)
        result = await rig.play(
            Scenario("bad", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "host_unavailable")
        )
        assert result.outcome == "host_unavailable"
        assert result.states[-3:] == ["returning_card", "receipt", "idle"]
        assert rig.balance(ALICE) == before  # a 0200 the host approved is reversed
        assert rig.terminal.state is State.IDLE

    with_rig(body)


def test_malformed_field_54_ends_the_session_cleanly(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        original = rig.host.authoriser.handle

        def mangle(request: Message, peer: str = "") -> Message | None:
            response = original(request, peer)
            if response is not None and "54" in response:
                response["54"] = "garbage"
            return response

        rig.host.authoriser.handle = mangle  # type: ignore[method-assign]
        result = await rig.play(Scenario("bad54", "ALICE ARDEN", [Pin("1234")], "host_unavailable"))
        assert result.outcome == "host_unavailable"
        assert not rig.reader.card_present

    with_rig(body)


@pytest.mark.parametrize(
    ("step", "after", "debited"),
    [
        ("dispense", False, 0),  # DISPENSE raises: nothing handed over, reversed
        ("present", False, 0),  # the shutter fails before anyone could take the notes
        ("present", True, 10_000),  # the customer took them, then the device failed
    ],
)
def test_dispenser_error_after_approval_debits_exactly_what_was_taken(
    with_rig: Any, step: str, after: bool, debited: int
) -> None:
    async def body(rig: Rig) -> None:
        before = rig.balance(ALICE)
        real = getattr(rig.dispenser, f"_do_{step}")

        def fails(*args: Any) -> Any:
            if after:
                real(*args)
            raise DeviceTimeout("dispenser", f"no answer to {step.upper()}")

        setattr(rig.dispenser, f"_do_{step}", fails)
        result = await rig.play(
            Scenario("broken", "ALICE ARDEN", [Pin("1234"), WITHDRAW, Keys("100")], "")
        )
        assert result.dispensed == debited == rig.dispenser.handed_out_amount
        assert not rig.dispenser.notes_pending()  # nothing left where a passer-by could take it
        assert rig.balance(ALICE) == before - debited
        assert rig.terminal.saf.pending == 0
        assert not rig.reader.card_present and result.states[-1] == "idle"

    with_rig(body)


def test_unsettled_session_keeps_the_terminal_out_of_service(with_rig: Any) -> None:
    async def body(rig: Rig) -> None:
        rig.terminal._recovered = False  # as after a start whose recovery failed
        original = rig.terminal._recover
        rig.terminal._recover = lambda: False  # type: ignore[method-assign]
        assert await rig.terminal.serve_one() is None
        rig.terminal._recover = original  # type: ignore[method-assign]
        assert rig.terminal._recover() and rig.terminal.recovered
        assert (await rig.play(DEMO[1])).outcome == "balance_shown"

    with_rig(body)
