"""`atm diag status`: every configured device, as a field engineer runs it.

Against the in-process sim backends (the default config), against the emulators on real
ptys (the serial drivers asked over the line), and with a device whose port does not
exist, a pty nobody answers on, or a section that cannot build its device: each listed
with its error, exit 1, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atm_common.clock import ManualClock
from sim.data import DEMO_SEED
from sim.devices.launcher import EmulatedDevices, emulators_on_ptys, kiosk_toml
from terminal.cli.diag import DEFAULT_CONFIG
from terminal.config import load_config, parse_config
from terminal.diag.status import format_report, status_report

ATM = [sys.executable, "-m", "atm"]
TERMINAL_ID = "ATM00001"


def _status(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ATM, "diag", "status", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _json(config: Path | str) -> tuple[int, dict[str, Any]]:
    run = _status("--config", str(config), "--json")
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, dict(json.loads(run.stdout))


def _by_kind(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {device["kind"]: device for device in report["devices"]}


def _value_column(line: str) -> int:
    match = re.match(r"(checked at|  \S+|\S+) +", line)
    assert match is not None, line
    return match.end()


def _assert_plain_text(text: str) -> None:
    """Human output: no Python reprs (None, booleans, dicts, lists or tuples of values)."""
    for repr_mark in ("None", "True", "False", "{", "}", "', '", "[2000", "(2000"):
        assert repr_mark not in text, f"{repr_mark!r} in human output:\n{text}"


# -- the default config: in-process sim backends ------------------------------------------------


def test_sim_backends_are_all_listed_and_ok() -> None:
    code, report = _json(DEFAULT_CONFIG)
    assert code == 0
    assert report["ok"] is True
    configured = list(load_config(Path(DEFAULT_CONFIG)).devices)
    devices = _by_kind(report)
    assert sorted(devices) == sorted(configured)
    for kind, device in devices.items():
        assert device["backend"] == "sim", kind
        assert device["state"] == "ok" and device["ok"] is True, device
        assert device["error"] is None
    assert devices["dispenser"]["counters"]["cassette1"] == 250
    assert devices["dispenser"]["info"]["denominations"] == [2000, 5000]
    assert devices["camera"]["info"]["resolution"] == "640x480"
    assert devices["card_reader"]["counters"] == {"retained": 0}
    assert report["terminal"]["id"] == TERMINAL_ID


def test_human_output_is_one_aligned_block_per_device() -> None:
    run = _status()
    assert run.returncode == 0, run.stderr
    _assert_plain_text(run.stdout)
    lines = run.stdout.splitlines()
    configured = list(load_config(Path(DEFAULT_CONFIG)).devices)
    for kind in configured:
        assert kind in lines, f"no block for {kind}"
    # every row of every block, and of the terminal's head, has its value in one column
    head = lines[: lines.index("")]
    rows = [line for line in lines if line.startswith("  ")]
    columns = {_value_column(line) for line in head + rows}
    assert len(columns) == 1, lines
    assert lines[-1] == f"{len(configured)} devices, all ok"


def test_help_documents_the_exit_status() -> None:
    run = subprocess.run(
        [*ATM, "diag", "status", "--help"], capture_output=True, text=True, check=True
    )
    assert "exit status" in run.stdout
    assert "0  every device is ok" in run.stdout and "1  at least one" in run.stdout


def test_a_degraded_device_makes_the_check_fail(tmp_path: Path) -> None:
    config = parse_config(
        {
            "terminal": {"id": TERMINAL_ID},
            "host": {"plain": True},
            "devices": {
                "dispenser": {"backend": "sim", "cassettes": [[2000, 5], [5000, 100]]},
                "gps": {"backend": "sim"},
            },
        },
        "near-end.toml",
    )
    report = status_report(config, ManualClock())
    devices = _by_kind(report)
    assert devices["dispenser"]["state"] == "degraded"
    assert devices["gps"]["state"] == "ok" and devices["gps"]["info"]["fix"] == "valid"
    assert report["ok"] is False
    text = format_report(report)
    _assert_plain_text(text)
    assert text.splitlines()[-1] == "4 devices, 1 not ok: dispenser degraded"


def test_a_section_that_cannot_build_its_device_is_listed_as_error() -> None:
    config = parse_config(
        {
            "terminal": {"id": TERMINAL_ID},
            "host": {"plain": True},
            "devices": {"camera": {"backend": "sim", "no_such_option": 1}},
        },
        "bad-option.toml",
    )
    devices = _by_kind(status_report(config, ManualClock()))
    assert devices["camera"]["state"] == "error"
    assert "no_such_option" in devices["camera"]["error"]
    assert all(devices[k]["state"] == "ok" for k in ("card_reader", "pinpad", "dispenser"))


# -- the emulators on real ptys -------------------------------------------------------------------


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[tuple[Path, EmulatedDevices]]:
    with emulators_on_ptys(DEMO_SEED, TERMINAL_ID) as emulated:
        config = tmp_path / "kiosk.toml"
        config.write_text(kiosk_toml(emulated, TERMINAL_ID, tls_dir=None))
        yield config, emulated


@pytest.mark.serial_pty
def test_emulators_on_ptys_report_identity_and_counters(
    kiosk: tuple[Path, EmulatedDevices],
) -> None:
    config, emulated = kiosk
    emulated.gps.talker = "GN"  # what the line says, not a constant of the driver
    code, report = _json(config)
    devices = _by_kind(report)
    assert sorted(devices) == sorted(load_config(config).devices)
    assert code == 0 and report["ok"] is True, devices

    pinpad = devices["pinpad"]
    assert pinpad["backend"] == "epp" and pinpad["state"] == "ok"
    assert pinpad["info"]["model"] == "ZT588-SIM"
    assert pinpad["info"]["serial"] == "SIM00000001" and pinpad["info"]["firmware"] == "1.0.0"
    assert pinpad["info"]["port"] == emulated.paths["pinpad"]
    assert pinpad["info"]["security"] == "tdes"

    dispenser = devices["dispenser"]
    assert dispenser["backend"] == "lcdm" and dispenser["state"] == "ok"
    assert dispenser["info"]["cassettes_present"] == [1, 2]
    assert dispenser["info"]["reject_tray"] == "in place"
    assert dispenser["counters"] == {"cassette1": 250, "cassette2": 100}

    gps = devices["gps"]
    assert gps["backend"] == "nmea" and gps["state"] == "ok"
    assert gps["info"]["talker"] == "GN" and gps["info"]["fix"] == "valid"
    assert abs(gps["info"]["lat"] - 52.52) < 1e-6
    assert gps["counters"]["sentences"] >= 1 and gps["counters"]["checksum_errors"] == 0

    run = _status("--config", str(config))
    assert run.returncode == 0, run.stderr
    _assert_plain_text(run.stdout)
    assert "ZT588-SIM" in run.stdout and emulated.paths["dispenser"] in run.stdout


# -- devices that cannot be opened or do not answer ----------------------------------------------


def test_a_port_that_does_not_exist_is_listed_offline_with_its_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[terminal]\nid = "{TERMINAL_ID}"\n[host]\nplain = true\n'
        '[devices.dispenser]\nbackend = "lcdm"\nurl = "/dev/nonexistent-tty"\n'
        "denominations = [2000]\ncounts = [10]\n"
        '[devices.camera]\nbackend = "sim"\n'
    )
    code, report = _json(bad)
    assert code == 1 and report["ok"] is False
    devices = _by_kind(report)
    assert sorted(devices) == sorted(load_config(bad).devices)
    dispenser = devices["dispenser"]
    assert dispenser["state"] == "offline" and dispenser["ok"] is False
    assert "/dev/nonexistent-tty" in dispenser["error"]
    assert dispenser["counters"] == {"cassette1": 10}  # what the driver knows, still shown
    assert all(devices[k]["state"] == "ok" for k in ("card_reader", "pinpad", "camera"))

    run = _status("--config", str(bad))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    _assert_plain_text(run.stdout)
    assert "/dev/nonexistent-tty" in run.stdout
    assert run.stdout.splitlines()[-1] == "4 devices, 1 not ok: dispenser offline"


@pytest.mark.serial_pty
def test_devices_that_do_not_answer_are_listed_offline(tmp_path: Path) -> None:
    master, slave = os.openpty()  # a port that exists, with nothing behind it
    try:
        tty.setraw(slave)
        path = os.ttyname(slave)
        silent = tmp_path / "silent.toml"
        silent.write_text(
            f'[terminal]\nid = "{TERMINAL_ID}"\n[host]\nplain = true\n'
            f'[devices.pinpad]\nbackend = "epp"\nurl = "{path}"\nresponse_timeout = 0.3\n'
            f'[devices.gps]\nbackend = "nmea"\nurl = "{path}"\n'
        )
        code, report = _json(silent)
    finally:
        os.close(master)
        os.close(slave)
    assert code == 1
    devices = _by_kind(report)
    assert sorted(devices) == sorted(load_config(silent).devices)
    assert devices["pinpad"]["state"] == "offline"
    assert "no answer" in devices["pinpad"]["error"]
    assert devices["gps"]["state"] == "offline"
    assert "silent" in devices["gps"]["error"]
