"""The LCDM driver through a real pseudo-terminal, on the system clock.

Same driver, same emulator as the ``sim://`` contract rig, but the bytes cross the
kernel's tty layer (termios settings on a real file descriptor, reads that block in
``select``), which is what a kiosk's USB-serial adapter looks like to the driver. The
line runs 8N1 here because a pty refuses parity settings; the bytes are the same.
The emulator picks notes in zero time so the test stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atm_common.clock import SystemClock
from sim.devices.lcdm import LcdmEmulator
from sim.devices.pty import PtyBridge
from terminal.drivers.base import DeviceStatus
from terminal.drivers.dispenser import lcdm_protocol as p
from terminal.drivers.dispenser.lcdm import LcdmDispenser
from terminal.errors import DeviceTimeout

pytestmark = pytest.mark.serial_pty

Rig = tuple[LcdmDispenser, LcdmEmulator, PtyBridge]


@pytest.fixture
def pty_rig() -> Iterator[Rig]:
    clock = SystemClock()
    emulator = LcdmEmulator(((1000, 100), (5000, 50)), clock=clock, seconds_per_note=0.0)
    with PtyBridge(emulator, "lcdm", interval=0.005) as bridge:
        dispenser = LcdmDispenser(
            bridge.path,
            clock,
            denominations=[1000, 5000],
            counts=[100, 50],
            parity="N",  # a pty refuses PARENB (tcsetattr EINVAL); the bytes are the same
            ack_timeout=0.2,
            response_timeout=2.0,
            retries=1,
            poll_interval=0.02,
        )
        with dispenser:
            yield dispenser, emulator, bridge


def test_dispense_present_and_jam_over_a_pty(pty_rig: Rig) -> None:
    dispenser, emulator, bridge = pty_rig
    assert dispenser.status() is DeviceStatus.OK
    result = dispenser.dispense(7000)
    assert result.complete and dict(result.notes) == {1: 2, 2: 1}
    assert dispenser.present(take_timeout=1.0) is True

    with bridge.lock:
        emulator.inject_jam(after_notes=2)
    result = dispenser.dispense(12000)  # 2 x 1000 then 2 x 5000: jams after 2 notes
    assert result.fault is not None and result.fault.code == 0x02
    assert sum(result.notes.values()) == 2 and result.amount == 2000
    assert dispenser.status() is DeviceStatus.FAULT
    assert dispenser.retract() == 2
    with bridge.lock:
        assert emulator.stacked_amount == 0 and emulator.retracted_amount == 2000
        assert emulator.handed_out_amount == 7000
        assert emulator.invariant_holds()
    assert [c.count for c in dispenser.cassettes()] == list(emulator.cassette_counts.values())


def test_wire_faults_over_a_pty(pty_rig: Rig) -> None:
    dispenser, emulator, bridge = pty_rig
    with bridge.lock:
        emulator.garble_next(1, command=p.Command.STATUS)
    assert len(dispenser.cassettes()) == 2
    with bridge.lock:
        assert emulator.naks_received == 1
        emulator.mute(2)
    with pytest.raises(DeviceTimeout, match="STATUS"):
        dispenser.cassettes()
    assert len(dispenser.cassettes()) == 2  # the line recovers


def test_cash_not_taken_over_a_pty(pty_rig: Rig) -> None:
    dispenser, emulator, bridge = pty_rig
    dispenser.dispense(5000)
    with bridge.lock:
        emulator.script_take_cash(False)
    assert dispenser.present(take_timeout=0.1) is False
    assert dispenser.retract() == 1
