"""The emulated kiosk end to end, as a person uses it (README, "A kiosk on emulators"):
``atm sim devices`` (dispenser, PIN pad, GPS on ptys; pcscd with a vpcd reader), ``atm run
--config <generated>`` on a pty, and the person's hands from another shell: ``atm sim card
insert|swap|remove``, ``atm sim pinpad press``, ``atm sim cash take``.

pcscd is one per machine: this test lends the package's pcscd (``env``) to ``atm sim
devices`` by stopping it first; the ``env`` fixture starts it again afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.devices.pcsc_env import PcscEnv, live_pcscd_pids
from tests.host_process import Host, free_port
from tests.pty_console import PtyProcess

pytestmark = [pytest.mark.pcsc, pytest.mark.serial_pty, pytest.mark.e2e]

ATM = [sys.executable, "-m", "atm"]
ALICE, BOB = "4761739001010010", "5413330089010012"  # demo seed: PINs 1234, 4321


class Hands:
    """``atm sim card|pinpad|cash ...`` against one ``atm sim devices``."""

    def __init__(self, control: Path) -> None:
        self.control = control

    def __call__(self, *args: str) -> str:
        run = subprocess.run(
            [*ATM, "sim", *args, "--control", str(self.control)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
        return run.stdout.strip()


@pytest.fixture
def emulated_kiosk(env: PcscEnv, tmp_path: Path) -> Iterator[tuple[PtyProcess, Hands]]:
    env.stop_pcscd()  # atm sim devices starts its own: lend it the machine's one pcscd
    host = Host(tmp_path, free_port())
    host.start()
    config, control = tmp_path / "kiosk.toml", tmp_path / "ctl.sock"
    with (tmp_path / "devices.log").open("w") as errors:
        devices = subprocess.Popen(
            [
                *(*ATM, "sim", "devices", "--plain", "--host-port", str(host.port)),
                *("--config-out", str(config), "--control", str(control), "--seconds", "300"),
            ],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    kiosk: PtyProcess | None = None
    try:
        assert devices.stdout is not None
        lines = []
        while not (lines and lines[-1].startswith("config:")):
            line = devices.stdout.readline()
            assert line, (tmp_path / "devices.log").read_text()
            lines.append(line)
        assert any(line.startswith("card_reader: Virtual PCD 00 00") for line in lines), lines
        assert 'backend = "pcsc"' in config.read_text()
        kiosk = PtyProcess([*ATM, "run", "--config", str(config)], cwd=tmp_path)
        yield kiosk, Hands(control)
    finally:
        if kiosk is not None:
            kiosk.close()
        devices.terminate()
        devices.wait(30)
        host.stop()
        deadline = time.monotonic() + 10
        while live_pcscd_pids() and time.monotonic() < deadline:
            time.sleep(0.1)  # its pcscd is stopped by PID; the fixture restarts ours
    assert "Traceback" not in kiosk.screen, kiosk.screen
    assert "Traceback" not in (tmp_path / "devices.log").read_text()


def test_a_person_withdraws_cash_and_swaps_cards_at_the_emulated_kiosk(
    emulated_kiosk: tuple[PtyProcess, Hands],
) -> None:
    kiosk, hands = emulated_kiosk
    kiosk.expect(r"\[screen\] Welcome\. Please insert your card\.", timeout=60)
    assert "inserted into Virtual PCD 00 00" in hands("card", "insert", "--pan", ALICE)
    kiosk.expect("Please enter your PIN")
    assert hands("pinpad", "press", "1234", "enter") == "pressed * * * * ENTER"
    kiosk.expect("F1 Cash withdrawal")
    hands("pinpad", "press", "f1")
    kiosk.expect("Enter the amount")
    hands("pinpad", "press", "70", "enter")  # a 50 and a 20
    kiosk.expect("Please take your card")  # the card comes back before the cash
    assert "taken out of the reader" in hands("card", "remove")
    kiosk.expect("Please take your cash")
    assert hands("cash", "take") == "took 2 note(s)"
    kiosk.expect(r"Card 476173\*{6}0010 \| STAN \d{6}  Auth \S+ \| Result dispensed")
    kiosk.expect(r"Cash dispensed 70\.00")
    kiosk.expect("Welcome. Please insert your card.")
    # the next customer: a swap at an empty reader inserts; CANCEL gives the card back
    assert "inserted" in hands("card", "swap", "--pan", BOB)
    kiosk.expect("Please enter your PIN")
    hands("pinpad", "press", "cancel")
    kiosk.expect("Please take your card")
    hands("card", "remove")
    kiosk.expect(r"Card 541333\*{6}0012 \| (STAN \S+  Auth \S+ \| )?Result cancelled")
    kiosk.expect("Welcome. Please insert your card.")
