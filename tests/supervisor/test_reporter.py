"""The kiosk loop's status messages (0800/161) and the ``[supervisor]`` config section."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atm_common.errors import ConfigError
from sim.devices.emulator import register
from sim.devices.printer import EscPosEmulator
from sim.host.supervision.fleet import list_terminals
from terminal.config import SUPERVISOR_ROLES, parse_config
from terminal.drivers.printer.escpos import EscPosPrinter
from terminal.supervisor.reporter import StatusReporter
from terminal.supervisor.roles import FUNCTIONS, key_digest
from tests.conftest import Rig


def _fleet(rig: Rig) -> dict[str, Any]:
    rows = list_terminals(rig.host.authoriser.conn)
    return next(t for t in rows if t["terminal_id"] == rig.terminal.config.terminal_id)


def test_status_goes_to_the_host_on_every_change_and_on_the_interval(
    with_rig: Callable[..., Any], tmp_path: Path
) -> None:
    async def body(rig: Rig) -> None:
        emulator = EscPosEmulator(paper_lines=2000, low_at=5)
        printer = EscPosPrinter(register(f"reporter-{tmp_path.name}", emulator))
        printer.open()
        rig.terminal.devices.printer = printer
        reporter = StatusReporter(rig.terminal, interval=3600.0, check=0.01)
        assert await reporter.tick()  # the first check always reports
        fleet = _fleet(rig)
        assert fleet["mode"] == "in_service" and fleet["attention"] == "none"
        assert fleet["reported_cash"] == sum(c.value for c in rig.dispenser.cassettes())
        assert not await reporter.tick()  # nothing changed, the interval not over
        emulator.open_cover()
        assert await reporter.tick()  # a device changed: at once
        printer_row = {d["kind"]: d for d in _fleet(rig)["devices"]}["printer"]
        assert (printer_row["attention"], printer_row["actor"]) == ("now", "operator")
        emulator.open_cover(False)
        stop = asyncio.Event()
        running = asyncio.create_task(reporter.run(stop))
        for _ in range(200):  # the running loop notices the cover closed
            if _fleet(rig)["attention"] == "none":
                break
            await asyncio.sleep(0.01)
        stop.set()
        await running
        assert _fleet(rig)["attention"] == "none" and reporter.sent == 3
        often = StatusReporter(rig.terminal, interval=0.0)
        assert await often.tick() and await often.tick()  # the rhythm: sent though unchanged
        rig.terminal.security_mode = None  # not signed on: no MAC keys, nothing sent
        assert not await often.tick()

    with_rig(body)


BASE = """
[terminal]
id = "ATM00001"
[host]
address = "127.0.0.1"
port = 8583
plain = true
"""


def _parse(extra: str) -> Any:
    return parse_config(tomllib.loads(BASE + extra), "kiosk.toml")


def test_the_supervisor_section() -> None:
    assert _parse("").supervisor.status_interval == 60.0 and not _parse("").supervisor.keys
    digest = key_digest("rep-key")
    keys = f'[supervisor.keys]\nreplenisher = "{digest}"'
    config = _parse(f"[supervisor]\nstatus_interval = 5\n{keys}")
    assert config.supervisor.status_interval == 5.0
    assert config.supervisor.keys == {"replenisher": digest}
    with pytest.raises(ConfigError, match=r"supervisor.keys.replenisher: is not a scrypt"):
        _parse('[supervisor.keys]\nreplenisher = "rep-key"')  # the key itself: refused
    with pytest.raises(ConfigError, match=r"supervisor.keys.cashier: unknown role"):
        _parse(f'[supervisor.keys]\ncashier = "{digest}"')
    with pytest.raises(ConfigError, match=r"supervisor.status_interval: must be positive"):
        _parse("[supervisor]\nstatus_interval = 0")
    with pytest.raises(ConfigError, match=r"supervisor.colour: unknown key"):
        _parse('[supervisor]\ncolour = "red"')
    assert set(SUPERVISOR_ROLES) == set(FUNCTIONS)  # the config knows the roles there are
    # at the kiosk: lockout, idle timeout, cassette capacity
    kiosk = _parse("").supervisor
    assert (kiosk.lockout, kiosk.idle_timeout, kiosk.cassette_capacity) == (300.0, 300.0, 2000)
    kiosk = _parse("[supervisor]\nlockout = 60\nidle_timeout = 90\ncassette_capacity = 2500")
    assert kiosk.supervisor.lockout == 60.0 and kiosk.supervisor.idle_timeout == 90.0
    assert kiosk.supervisor.cassette_capacity == 2500
    with pytest.raises(ConfigError, match=r"supervisor.cassette_capacity: must be int"):
        _parse('[supervisor]\ncassette_capacity = "lots"')
    with pytest.raises(ConfigError, match=r"supervisor.lockout: must be positive"):
        _parse("[supervisor]\nlockout = 0")
