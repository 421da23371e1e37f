"""Supervisor mode by card + PIN on a live terminal and host (real TCP, real SQLite): the
card under ``[supervisor] card_prefixes`` starts no customer session, the host gives the
role, the card comes back, the journal holds nothing of the PIN; refusals leave the
terminal serving customers."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atm_common.errors import ConfigError
from atm_common.masking import mask_pan
from sim.host.seed import read_toml
from sim.host.supervision.fleet import list_terminals
from sim.scenarios.demo import DEMO_SEED
from sim.scenarios.scripts import BALANCE as F2
from sim.scenarios.scripts import Scenario
from terminal.app import NO_SUPERVISOR_CONSOLE
from terminal.config import parse_config
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.pinpad.base import PinEntry
from terminal.drivers.pinpad.sim import Keys, Pin
from terminal.fsm.customer import State
from terminal.kiosk.i18n import gettext_for
from terminal.supervisor.console import REFUSALS, SupervisorConsole
from terminal.supervisor.counters import CashCounters
from terminal.supervisor.errors import SupervisorError
from terminal.supervisor.roles import SupervisorMode
from terminal.ui import RecordingDisplay, Screen
from tests.conftest import Rig

STAFF = {c["role"]: c for c in read_toml(DEMO_SEED)["supervisor_cards"]}
BALANCE = Scenario("b", "ALICE ARDEN", [Pin("1234"), F2, Keys("")], "balance_shown")


def _card(role: str) -> CardData:
    pan, expiry = STAFF[role]["pan"], STAFF[role]["expiry"]
    return CardData(pan=pan, expiry=expiry, track2=f"{pan}={expiry}201")


def _setup(rig: Rig, tmp_path: Path, console: bool = True) -> SupervisorConsole | None:
    t = rig.terminal
    t.config = dataclasses.replace(
        t.config, supervisor=dataclasses.replace(t.config.supervisor, card_prefixes=("600999",))
    )
    if not console:
        return None
    return SupervisorConsole(t, SupervisorMode({}), CashCounters(tmp_path / "cash.db"))


def _blocks(rig: Rig) -> list[bytes]:
    """Every PIN block the PIN pad hands out from now on (to look for it in the journal)."""
    seen: list[bytes] = []
    pad = rig.pinpad
    read_pin = pad.read_pin

    def spy(pan: str, **kwargs: Any) -> PinEntry:
        entry = read_pin(pan, **kwargs)
        seen.append(entry.block)
        return entry

    pad.read_pin = spy  # type: ignore[method-assign]
    return seen


def _requests(rig: Rig) -> int:
    (n,) = rig.host.authoriser.conn.execute("SELECT COUNT(*) FROM requests").fetchone()
    return int(n)


def _fleet(rig: Rig) -> dict[str, Any]:
    rows = list_terminals(rig.host.authoriser.conn)
    return next(t for t in rows if t["terminal_id"] == rig.terminal.config.terminal_id)


def _state(rig: Rig) -> tuple[State, str | None]:
    return rig.terminal.state, rig.terminal.supervisor


def _screens(rig: Rig) -> list[Screen]:
    display = rig.terminal.display
    assert isinstance(display, RecordingDisplay)
    return [s for s, _ in display.shown]


def test_a_supervisor_card_enters_in_the_hosts_role(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        console = _setup(rig, tmp_path)
        assert console is not None
        t, card = rig.terminal, _card("technician")
        blocks = _blocks(rig)
        requests, sessions_before = _requests(rig), t.journal.last_session()[0]
        rig.pinpad.script(Pin(STAFF["technician"]["pin"]))
        rig.reader.insert(card)
        assert await t.serve_one() is None  # no customer session
        assert t.supervisor == "technician" and console.mode.role == "technician"
        assert t.state is State.OUT_OF_SERVICE and not await t.ready()
        assert _screens(rig)[-1] is Screen.SUPERVISOR
        assert not rig.reader.wait_for_card(0.0)  # the card came back
        assert _requests(rig) == requests  # no 0100/0200 reached the host
        assert t.journal.last_session()[0] == sessions_before
        assert (_fleet(rig)["mode"], _fleet(rig)["supervisor"]) == ("supervisor", "technician")
        entries = t.journal.tail(10)
        (enter,) = [e for e in entries if e.event == "supervisor_enter"]
        assert enter.data == {"role": "technician", "via": "card", "pan": mask_pan(card.pan)}
        assert "card_returned" in [e.event for e in entries]
        assert not [e for e in entries if e.event in ("card_read", "session_start", "receipt")]
        # nothing of the PIN, its block or the full PAN in the journal file
        (block,) = blocks
        raw = t.config.journal.read_bytes()
        assert block and block not in raw and block.hex().encode() not in raw.lower()
        assert card.pan.encode() not in raw
        assert STAFF["technician"]["pin"] not in " ".join(e.line() for e in entries)
        await console.leave()
        assert _state(rig) == (State.IDLE, None)  # serving customers again
        assert (await rig.play(BALANCE)).outcome == "balance_shown"  # customers again

    with_rig(body)


def test_a_wrong_pin_leaves_the_terminal_in_service(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        console = _setup(rig, tmp_path)
        assert console is not None
        t = rig.terminal
        rig.pinpad.script(Pin("0000"))
        rig.reader.insert(_card("replenisher"))
        assert await t.serve_one() is None
        assert t.supervisor is None and console.mode.role is None and t.state is State.IDLE
        assert _screens(rig)[-2:] == [Screen.SUPERVISOR_REFUSED, Screen.WELCOME]
        assert not rig.reader.wait_for_card(0.0)
        (refused,) = [e for e in t.journal.tail(10) if e.event == "supervisor_refused"]
        assert refused.data["code"] == "55" and refused.data["via"] == "card"
        assert _fleet(rig)["mode"] != "supervisor"
        assert (await rig.play(BALANCE)).outcome == "balance_shown"

    with_rig(body)


def test_a_supervisor_card_in_a_session_is_refused(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        console = _setup(rig, tmp_path)
        assert console is not None
        t = rig.terminal
        conn = rig.host.authoriser.conn
        t.machine.fire("card_inserted")  # a customer's session is open
        with pytest.raises(SupervisorError, match="between customers"):
            await console.enter_by_card(_card("technician"), b"\x00" * 8)
        assert t.supervisor is None and console.mode.role is None
        (events,) = conn.execute("SELECT COUNT(*) FROM supervision_events").fetchone()
        assert events == 0  # the host was not even asked

    with_rig(body)


def test_without_a_console_the_card_is_handed_back(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        _setup(rig, tmp_path, console=False)
        t = rig.terminal
        requests = _requests(rig)
        rig.reader.insert(_card("technician"))
        assert await t.serve_one() is None
        assert t.supervisor is None and t.state is State.IDLE
        assert not rig.reader.wait_for_card(0.0) and _requests(rig) == requests
        assert "supervisor_refused" in [e.event for e in t.journal.tail(5)]
        assert _screens(rig)[-2:] == [Screen.SUPERVISOR_REFUSED, Screen.WELCOME]

    with_rig(body)


BASE = '[terminal]\nid = "ATM00001"\n[host]\naddress = "127.0.0.1"\nport = 8583\nplain = true\n'


def test_card_prefixes_in_the_config() -> None:
    def parse(extra: str) -> Any:
        return parse_config(tomllib.loads(BASE + extra), "kiosk.toml")

    assert parse("").supervisor.card_prefixes == ()
    config = parse('[supervisor]\ncard_prefixes = ["600999", "6010"]')
    assert config.supervisor.card_prefixes == ("600999", "6010")
    for bad in ('"600999"', '["60a999"]', '["123456789012"]', '[""]', "[600999]"):
        with pytest.raises(ConfigError, match=r"supervisor.card_prefixes: must be a list"):
            parse(f"[supervisor]\ncard_prefixes = {bad}")


def test_every_refusal_reason_is_translated() -> None:
    for reason in [*REFUSALS.values(), NO_SUPERVISOR_CONSOLE, "no PIN"]:
        assert gettext_for("zh_Hans").gettext(reason) != reason, reason
