"""PIN entry through a real pseudo-terminal: pyserial on /dev/pts/N, the real clock.

Why: the sim:// handler never splits or delays bytes; a pty does, so this proves the driver
reassembles frames and key presses from an OS serial device, as on a kiosk.
"""

from __future__ import annotations

import pytest

from atm_common.clock import SystemClock
from atm_common.crypto.pinblock import recover_pin_format0
from sim.devices.epp import EppEmulator
from sim.devices.pty import PtyBridge
from terminal.drivers.pinpad.base import EntryOutcome
from terminal.drivers.pinpad.epp import EppPinPad
from terminal.drivers.pinpad.sim import CANCEL, Keys, Pin

PAN = "4012345678909"
PIN_KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")

pytestmark = pytest.mark.serial_pty


def test_pin_and_clear_entry_over_a_pty() -> None:
    clock = SystemClock()
    emulator = EppEmulator(clock, pin_key=PIN_KEY)
    with PtyBridge(emulator, "epp") as bridge:
        with bridge.lock:  # the pump thread drives the emulator too
            emulator.script(Pin("97531"), Keys("250"), CANCEL)
        with EppPinPad(bridge.path, clock=clock, response_timeout=2.0) as pad:
            assert pad.device_info()["model"] == "ZT588-SIM"
            entry = pad.read_pin(PAN, timeout=10.0)
            assert (entry.outcome, entry.digits) == (EntryOutcome.ENTERED, 5)
            assert recover_pin_format0(entry.block, PAN, PIN_KEY) == "97531"
            assert pad.read_keys(timeout=10.0).keys == "250"
            assert pad.read_pin(PAN, timeout=10.0).outcome is EntryOutcome.CANCELLED


def test_timeout_over_a_pty_uses_the_real_clock() -> None:
    clock = SystemClock()
    emulator = EppEmulator(clock, pin_key=PIN_KEY)
    with PtyBridge(emulator, "epp") as bridge, EppPinPad(bridge.path, clock=clock) as pad:
        start = clock.monotonic()
        assert pad.read_keys(timeout=0.3).outcome is EntryOutcome.TIMEOUT
        assert 0.3 <= clock.monotonic() - start < 3.0
