"""``atm run --sim`` as a person uses it: the real process on a real pty, a real host
process, typing at the prompt and reading the screen. Nothing one customer types, and no
host restart or wrong key, ends the run or shows a traceback; Ctrl-C and Ctrl-D end it at
once, cleanly."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host_process import Host, free_port
from tests.pty_console import CTRL_C, CTRL_D, PtyProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SIM_CONFIG = ROOT / "terminal" / "data" / "sim-terminal.toml"
ALICE = "4761739001010010"  # demo seed: PIN 1234
PROMPT = r"card PAN \(empty to quit\)> "


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    running = Host(tmp_path, free_port())
    running.start()
    yield running
    running.stop()


def kiosk_config(tmp_path: Path, port: int, *, tmk: str | None = None) -> Path:
    """The shipped --sim config, on this host (plain TCP), with its journal in tmp_path."""
    lines = []
    for line in SIM_CONFIG.read_text().splitlines():
        if line.startswith("journal ="):
            line = f'journal = "{tmp_path / "journal.db"}"'
        elif line.startswith("port ="):
            line = f"port = {port}"
        elif line.startswith("tls ="):
            line = "plain = true"
        elif line.startswith("tmk =") and tmk is not None:
            line = f'tmk = "{tmk}"'
        lines.append(line)
    path = tmp_path / "kiosk.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def journal_events(tmp_path: Path, event: str) -> list[str]:
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        rows = conn.execute("SELECT data FROM journal WHERE event = ?", (event,)).fetchall()
    return [str(r[0]) for r in rows]


@pytest.fixture
def console(tmp_path: Path, host: Host) -> Iterator[PtyProcess]:
    config = kiosk_config(tmp_path, host.port)
    proc = PtyProcess([sys.executable, "-m", "atm", "run", "--sim", "--config", str(config)])
    yield proc
    proc.close()
    assert "Traceback" not in proc.screen, proc.screen


def balance(proc: PtyProcess, pan: str = ALICE) -> None:
    proc.expect(PROMPT)
    proc.line(pan)
    proc.expect("expiry YYMM> ")
    proc.line("3012")
    proc.expect("inputs> ")
    proc.line("pin 1234, F2, enter")


def test_letters_for_a_pan_and_a_wrong_expiry_are_asked_again(
    console: PtyProcess, tmp_path: Path
) -> None:
    console.expect(PROMPT)
    console.line("hello")
    console.expect(r"PAN: digits only, 12 to 19 of them; please type it again")
    console.expect(PROMPT)
    console.line(ALICE)
    console.expect("expiry YYMM> ")
    console.line("3012999999999999")  # 16 digits, as typed in the issue: never reaches the codec
    console.expect(r"expiry: 4 digits YYMM \(like 3012\)")
    console.expect("expiry YYMM> ")
    console.line("3013")
    console.expect(r"expiry: the month \(MM of YYMM\) must be 01 to 12, not 13")
    console.expect("expiry YYMM> ")
    console.line("3012")
    console.expect("inputs> ")
    console.line("pin 1234, F9")
    console.expect(r"inputs: unknown input 'F9'")
    console.expect("inputs> ")
    console.line("pin 1234, F2, enter")
    console.expect("outcome: balance_shown")
    console.expect(PROMPT)
    console.line("")
    assert console.wait() == 0
    assert not [d for d in journal_events(tmp_path, "host_error") if "encode" in d]


def test_ctrl_c_at_the_prompt_stops_at_once(console: PtyProcess) -> None:
    console.expect(PROMPT)
    started = time.monotonic()
    console.send(CTRL_C)
    assert console.wait(timeout=5) == 130
    assert time.monotonic() - started < 3
    assert console.screen.count("interrupted") == 1


def test_ctrl_d_ends_the_run_with_a_line(console: PtyProcess) -> None:
    balance(console)
    console.expect("outcome: balance_shown")
    console.expect(PROMPT)
    console.send(CTRL_D)
    assert console.wait(timeout=5) == 0
    assert "end of input: terminal stopped" in console.screen


def test_the_end_of_piped_input_ends_the_run_cleanly(tmp_path: Path, host: Host) -> None:
    config = kiosk_config(tmp_path, host.port)
    run = subprocess.run(
        [sys.executable, "-m", "atm", "run", "--sim", "--config", str(config)],
        input=f"hello\n{ALICE}\n3012\npin 1234, F2, enter\n{ALICE}\n",  # ends at the expiry
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "outcome: balance_shown" in run.stdout
    assert "end of input: terminal stopped" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_a_host_restart_mid_run_goes_out_of_service_and_back(
    console: PtyProcess, host: Host
) -> None:
    balance(console)
    console.expect("outcome: balance_shown")
    host.stop()
    balance(console)  # the card is in before the terminal knows the host is gone
    console.expect("Service unavailable")
    console.expect("Please take your card")  # the card comes back
    console.expect("outcome: host_unavailable")
    console.expect(r"out of service: host: cannot sign on to the host: .*next try in")
    time.sleep(2.5)  # two or three tries at 1 s, 2 s ...: the backoff grows
    host.start()
    console.expect("back in service", timeout=40)
    balance(console)
    console.expect("outcome: balance_shown")
    delays = [float(d) for d in re.findall(r"next try in ([\d.]+) s", console.screen)]
    assert 1 <= len(delays) <= 6 and delays == sorted(delays), delays


def test_a_wrong_master_key_backs_off_with_key_as_the_reason(tmp_path: Path, host: Host) -> None:
    config = kiosk_config(tmp_path, host.port, tmk="11ABCDEF01234567FEDCBA9876543210")
    proc = PtyProcess([sys.executable, "-m", "atm", "run", "--sim", "--config", str(config)])
    try:
        proc.expect(r"out of service: key: ")
        proc.drain(6.0)
        proc.send(CTRL_C)
        assert proc.wait(timeout=5) == 130
    finally:
        proc.close()
    assert "Traceback" not in proc.screen
    # 1 + 1, 2, 4 s: four tries in about 7 s (not 107 in 6 s), each a MAC failure at the host
    assert 2 <= host.mac_failures() <= 5, host.mac_failures()
    oos = journal_events(tmp_path, "out_of_service")
    assert len(oos) == 1 and "key:" in oos[0], oos
    tries = re.findall(r"\n  out of service: key: .*next try in", proc.screen)
    assert len(tries) == host.mac_failures()
