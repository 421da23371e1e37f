"""``atm run --config`` (the unattended kiosk loop) with a serial device missing: out of
service with the reason, a few lines rather than a flood (the loop backs off, the journal
records the reason once, the log is rate-limited), and in service by itself once the
device is there."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.host_process import Host, free_port
from tests.pty_console import PtyProcess

pytestmark = [pytest.mark.serial_pty, pytest.mark.e2e]

ATM = [sys.executable, "-m", "atm"]


def test_a_missing_dispenser_port_backs_off_and_comes_back(tmp_path: Path) -> None:
    host = Host(tmp_path, free_port())
    host.start()
    config, control = tmp_path / "kiosk.toml", tmp_path / "ctl.sock"
    devices = subprocess.Popen(
        [
            *(*ATM, "sim", "devices", "--plain", "--host-port", str(host.port)),
            *("--card-reader", "sim", "--control", str(control)),
            *("--config-out", str(config), "--seconds", "120"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    kiosk: PtyProcess | None = None
    try:
        assert devices.stdout is not None
        paths = {}
        while not config.exists() or "dispenser" not in paths:
            line = devices.stdout.readline()
            assert line, "atm sim devices stopped"
            name, _, value = line.strip().partition(": ")
            paths[name] = value
            if name == "config":
                break
        # the dispenser's port is a link that does not exist yet: a cable not plugged in
        port = tmp_path / "ttyDISPENSER"
        text = config.read_text().replace(f'"{paths["dispenser"]}"', f'"{port}"')
        assert str(port) in text
        config.write_text(text)
        kiosk = PtyProcess([*ATM, "run", "--config", str(config)], cwd=tmp_path)
        kiosk.expect(r"out of service: devices: failed to open: dispenser: cannot open serial")
        kiosk.drain(8.0)
        lines = [line for line in kiosk.screen.splitlines() if line.strip()]
        assert len(lines) <= 8, kiosk.screen  # not 192 lines in 10 s
        with sqlite3.connect(tmp_path / "var" / "journal.db") as conn:
            rows = conn.execute("SELECT event FROM journal").fetchall()
        assert rows == [("out_of_service",)], rows  # not 780 rows in 40 s
        os.symlink(paths["dispenser"], port)  # plugged in
        started = time.monotonic()
        kiosk.expect(r"\[screen\] Welcome\. Please insert your card\.", timeout=40)
        assert time.monotonic() - started < 35  # the backoff is capped
        # in service: the kiosk loop's status reporter tells the host (0800/161)
        terminal_id = next(
            line.split('"')[1] for line in text.splitlines() if line.startswith("id = ")
        )
        fleet: list[tuple[str, str]] = []
        for _ in range(100):
            with sqlite3.connect(f"file:{tmp_path / 'host.db'}?mode=ro", uri=True) as conn:
                fleet = conn.execute(
                    "SELECT mode, reported_cash FROM terminal_modes WHERE terminal_id = ?",
                    (terminal_id,),
                ).fetchall()
            if fleet:
                break
            time.sleep(0.1)
        assert fleet and fleet[0][0] == "in_service" and fleet[0][1] > 0, fleet
        kiosk.proc.terminate()
        assert kiosk.wait(timeout=20) == 0
        assert "Traceback" not in kiosk.screen
    finally:
        if kiosk is not None:
            kiosk.close()
        devices.terminate()
        devices.wait(20)
        host.stop()
