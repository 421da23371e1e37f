"""A terminal on simulated devices with corporate cards, against the real host process:
the screens offer exactly the held pairs, the permitted operations and the fund
accounts of the table; the customer can walk away at each new screen."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from sim.scenarios.demo import demo_terminal, seed_cards, sim_customer
from sim.scenarios.enterprise_demo import CARDS, company_table
from sim.scenarios.scripts import CONTINUE, Scenario, apply
from terminal.drivers.pinpad.sim import CANCEL, NO_INPUT, Fkey, Pin
from terminal.ui import RecordingDisplay, Screen
from tests.enterprise.conftest import HostProcess
from tests.host.helpers import DEMO_SEED

pytestmark = pytest.mark.e2e
LABELS = {"withdraw": "Cash withdrawal", "balance": "Balance"}


def play(
    host: HostProcess, tmp_path: Path, runs: list[Scenario]
) -> list[tuple[str, dict[Screen, str]]]:
    """Each scenario's outcome and the options of each corporate screen it showed."""

    async def main() -> list[tuple[str, dict[Screen, str]]]:
        clock = ManualClock(dt.datetime.now(dt.UTC))
        terminal = demo_terminal(tmp_path, host.iso_port, DEMO_SEED, clock, tls=None)
        assert terminal.start()
        customer, cards = sim_customer(terminal), seed_cards(DEMO_SEED)
        display = terminal.display
        assert isinstance(display, RecordingDisplay)
        out: list[tuple[str, dict[Screen, str]]] = []
        try:
            for scenario in runs:
                display.shown.clear()
                apply(scenario, customer, cards[scenario.card][0])
                result = await terminal.serve_one()
                assert result is not None
                screens: dict[Screen, str] = {
                    screen: str(values["options"])
                    for screen, values in display.shown
                    if screen in (Screen.CHOOSE_ROLE, Screen.CORPORATE_MENU, Screen.CHOOSE_ACCOUNT)
                }
                out.append((result.outcome, screens))
                assert customer.pinpad.clear_script() == 0
        finally:
            await terminal.close()
        return out

    return asyncio.run(main())


def options(labels: list[str]) -> str:
    return "   ".join(f"F{i + 1} {label}" for i, label in enumerate(labels))


def test_every_entry_at_the_atm_is_the_table(host: HostProcess, tmp_path: Path) -> None:
    table, held = company_table(DEMO_SEED)
    runs, expected = [], []
    for entry in table:
        pair = f"{entry['role']}@{entry['department']}"
        user = next(u for u, pairs in held.items() if pair in pairs)
        name, pin = CARDS[user]
        index = held[user].index(pair)
        runs.append(Scenario(pair, name, [Pin(pin), Fkey(f"F{index + 1}"), Fkey("F1"), CANCEL], ""))
        menu = [LABELS[op] for op in ("withdraw", "balance") if op in entry["operations"]]
        roles = [p.replace("_", " ").replace("@", " @ ") for p in held[user]]
        expected.append(
            (
                "cancelled",
                {
                    Screen.CHOOSE_ROLE: options(roles),
                    Screen.CORPORATE_MENU: options(menu),
                    Screen.CHOOSE_ACCOUNT: options(sorted(entry["accounts"])),
                },
            )
        )
    assert play(host, tmp_path, runs) == expected


def test_walking_away_and_keys_outside_the_menu(host: HostProcess, tmp_path: Path) -> None:
    jan, pin = CARDS["jan"]
    before = host.balances()
    runs = [
        Scenario("walks away at the role", jan, [Pin(pin), NO_INPUT], ""),
        # F2 is no option for a beneficiary (only Balance): nothing happens, then Balance
        Scenario(
            "balance", jan, [Pin(pin), Fkey("F1"), Fkey("F2"), Fkey("F1"), Fkey("F1"), CONTINUE], ""
        ),
    ]
    (away, _), (balance, screens) = play(host, tmp_path, runs)
    assert away == "timeout"
    assert balance == "balance_shown"
    assert screens[Screen.CORPORATE_MENU] == "F1 Balance"
    assert host.balances() == before
