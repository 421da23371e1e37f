"""The joint waiting screen listens for CANCEL only: the scripted PIN pad keeps any other
scripted entry for the entry after the wait (the in-process pad; the EPP emulator is
driven the same way by the demo, tests/test_e2e_demo.py)."""

from __future__ import annotations

from atm_common.clock import ManualClock
from terminal.drivers.pinpad.base import EntryOutcome
from terminal.drivers.pinpad.sim import CANCEL, Fkey, Keys, SimPinPad


def _waiting(pad: SimPinPad) -> EntryOutcome:
    return pad.read_keys(max_digits=0, timeout=0.25, function_keys=False).outcome


def test_keys_for_after_the_wait_stay_and_cancel_is_taken() -> None:
    pad = SimPinPad(ManualClock())
    pad.open()
    pad.script(Keys(""), Fkey("F2"), CANCEL)
    assert _waiting(pad) is EntryOutcome.TIMEOUT and pad.pending() == 3
    assert pad.read_keys().keys == ""  # the CONTINUE after a balance is still there
    assert _waiting(pad) is EntryOutcome.TIMEOUT and pad.pending() == 2
    assert pad.read_keys().keys == "F2"
    assert _waiting(pad) is EntryOutcome.CANCELLED and pad.pending() == 0
    assert pad.read_keys(max_digits=0).outcome is EntryOutcome.TIMEOUT  # nothing scripted
