"""``atm run --config`` (real processes: host, device emulators on ptys, the kiosk loop):
F8 and the supervisor key pressed on the emulated EPP put the running kiosk in supervisor
mode, the menu's 0 leaves it; the host saw 0800/171 then 0800/172, and the key is in no
output and no file of the terminal."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from atm_common.keyhash import verify_key
from sim.devices.launcher import DEMO_SUPERVISOR_KEYS
from terminal.supervisor.roles import key_digest
from tests.host_process import Host, free_port
from tests.pty_console import PtyProcess

pytestmark = [pytest.mark.serial_pty, pytest.mark.e2e]

ATM = [sys.executable, "-m", "atm"]
KEY = "97531864"


def _press(control: Path, *keys: str) -> str:
    done = subprocess.run(
        [*ATM, "sim", "pinpad", "press", *keys, "--control", str(control)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def _host_events(db: Path, terminal_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT kind, detail FROM supervision_events WHERE terminal_id = ? ORDER BY at, id",
            (terminal_id,),
        ).fetchall()
    return [(str(k), str(d)) for k, d in rows]


def test_f8_and_the_key_at_a_running_kiosk_then_leave(tmp_path: Path) -> None:
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
        while True:
            line = devices.stdout.readline()
            assert line, "atm sim devices stopped"
            if line.startswith("config: "):
                break
        text = config.read_text()
        # the written config opens supervisor mode with the demo's keys (salted hashes)
        written = tomllib.loads(text)["supervisor"]["keys"]
        for role, demo_key in DEMO_SUPERVISOR_KEYS.items():
            assert verify_key(demo_key, written[role])
        # this test's own key instead: long enough never to turn up by chance in a file
        text = text.split("# supervisor mode")[0]
        config.write_text(
            text + f"\n[supervisor]\nidle_timeout = 60.0\n[supervisor.keys]\n"
            f'replenisher = "{key_digest(KEY)}"\n'
        )
        terminal_id = next(
            line.split('"')[1] for line in text.splitlines() if line.startswith("id = ")
        )
        kiosk = PtyProcess([*ATM, "run", "--config", str(config)], cwd=tmp_path)
        kiosk.expect(r"\[screen\] Welcome\. Please insert your card\.", timeout=40)
        assert KEY not in _press(control, "f8")
        kiosk.expect(r"\[screen\] Supervisor key: type it on the PIN pad")
        _press(control, KEY, "enter")
        kiosk.expect(r"\[screen\] Supervisor mode \(replenisher\): 1 Replenish")
        for _ in range(100):
            if _host_events(tmp_path / "host.db", terminal_id):
                break
            time.sleep(0.1)
        assert _host_events(tmp_path / "host.db", terminal_id) == [
            ("supervisor_enter", "replenisher")
        ]
        _press(control, "0", "enter")
        kiosk.expect(r"\[screen\] Welcome\. Please insert your card\.", timeout=30)
        for _ in range(100):
            if len(_host_events(tmp_path / "host.db", terminal_id)) == 2:
                break
            time.sleep(0.1)
        # the enter alone was there before: 171 came first, then 172
        kinds = sorted(kind for kind, _ in _host_events(tmp_path / "host.db", terminal_id))
        assert kinds == ["supervisor_enter", "supervisor_exit"]
        # in again, then SIGTERM while the menu waits: supervisor mode is left (0800/172)
        # within about a second, far under idle_timeout (60 s), and the kiosk exits cleanly
        _press(control, "f8")
        kiosk.expect(r"\[screen\] Supervisor key: type it on the PIN pad")
        _press(control, KEY, "enter")
        kiosk.expect(r"\[screen\] Supervisor mode \(replenisher\): 1 Replenish")
        time.sleep(0.5)
        stopped = time.monotonic()
        kiosk.proc.terminate()
        assert kiosk.wait(timeout=20) == 0
        assert time.monotonic() - stopped < 15.0
        kinds = sorted(kind for kind, _ in _host_events(tmp_path / "host.db", terminal_id))
        assert kinds == ["supervisor_enter"] * 2 + ["supervisor_exit"] * 2
        assert "Traceback" not in kiosk.screen and KEY not in kiosk.screen
        var = tmp_path / "var"
        with sqlite3.connect(var / "journal.db") as conn:
            events = [e for (e,) in conn.execute("SELECT event FROM journal ORDER BY seq")]
        assert events.index("supervisor_enter") < events.index("supervisor_exit")
        with sqlite3.connect(var / "journal.db") as conn:
            exits = [d for (d,) in conn.execute(
                "SELECT data FROM journal WHERE event = 'supervisor_exit' ORDER BY seq"
            )]  # fmt: skip
        assert [json.loads(d).get("reason") for d in exits] == [None, "stop"]
        for path in var.iterdir():  # the journal, the cash counters, the SAF: no key
            assert KEY.encode() not in path.read_bytes(), path
        assert (var / "journal-cash.db").stat().st_mode & 0o077 == 0
    finally:
        if kiosk is not None:
            kiosk.close()
        devices.terminate()
        devices.wait(20)
        host.stop()
