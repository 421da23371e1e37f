"""PIN pad contract: encrypted PIN blocks, the PIN never in clear outside the pad, keys."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from terminal.clock import ManualClock
from terminal.drivers.pinpad.base import EntryOutcome, KeyEntry, PinEntry, PinPad
from terminal.drivers.pinpad.sim import CANCEL, NO_INPUT, Fkey, Keys, Pin, SimPinPad
from terminal.errors import ConfigError, LocalProtocolError
from terminal.security.pinblock import clear_format0, recover_pin_format0

from .conftest import TEST_PIN_KEY

PAN = "4012345678909"
OTHER_PAN = "5413330089604111"
SECRET = "97531"  # digits unlikely to appear by chance in reprs, logs or timestamps

Rig = tuple[PinPad, Any]


def test_pin_block_decrypts_to_the_scripted_pin(pinpad_rig: Rig) -> None:
    pad, customer = pinpad_rig
    customer.script(Pin(SECRET))
    entry = pad.read_pin(PAN)
    assert entry.outcome is EntryOutcome.ENTERED
    assert (entry.digits, entry.block_format, len(entry.block)) == (5, 0, 8)
    assert entry.block != clear_format0(SECRET, PAN)  # ciphertext, not the clear block
    assert recover_pin_format0(entry.block, PAN, TEST_PIN_KEY) == SECRET


def test_pin_block_is_bound_to_the_pan(pinpad_rig: Rig) -> None:
    pad, customer = pinpad_rig
    customer.script(Pin(SECRET), Pin(SECRET))
    first, second = pad.read_pin(PAN), pad.read_pin(OTHER_PAN)
    assert first.block != second.block
    assert recover_pin_format0(second.block, OTHER_PAN, TEST_PIN_KEY) == SECRET


def test_pin_never_shows_in_reprs_or_logs(
    pinpad_rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    pad, customer = pinpad_rig
    scripted = Pin(SECRET)
    customer.script(scripted)
    with caplog.at_level(logging.DEBUG):
        entry = pad.read_pin(PAN)
    assert SECRET not in repr(scripted)
    assert SECRET not in repr(entry) and SECRET not in str(entry)
    assert entry.block.hex() not in repr(entry).lower()
    assert SECRET not in repr(pad)
    assert SECRET not in caplog.text


def test_cancel_during_pin_entry(pinpad_rig: Rig, clock: ManualClock) -> None:
    pad, customer = pinpad_rig
    customer.script(CANCEL)
    start = clock.monotonic()
    entry = pad.read_pin(PAN)
    assert entry.outcome is EntryOutcome.CANCELLED
    assert (entry.block, entry.digits) == (b"", 0)
    assert clock.monotonic() == start


@pytest.mark.parametrize("script", [[NO_INPUT], []], ids=["no-input", "empty-script"])
def test_pin_timeout_advances_the_clock_by_the_timeout(
    pinpad_rig: Rig, clock: ManualClock, script: list[Any]
) -> None:
    pad, customer = pinpad_rig
    customer.script(*script)
    start = clock.monotonic()
    entry = pad.read_pin(PAN, timeout=25.0)
    assert entry.outcome is EntryOutcome.TIMEOUT
    assert entry.block == b""
    assert clock.monotonic() - start == pytest.approx(25.0)


def test_short_pin_enter_is_ignored_until_timeout(pinpad_rig: Rig, clock: ManualClock) -> None:
    pad, customer = pinpad_rig
    customer.script(Pin("123"), Pin(SECRET))
    start = clock.monotonic()
    assert pad.read_pin(PAN, min_digits=4, timeout=20.0).outcome is EntryOutcome.TIMEOUT
    assert clock.monotonic() - start == pytest.approx(20.0)
    assert pad.read_pin(PAN).outcome is EntryOutcome.ENTERED  # next entry is unaffected


def test_digits_beyond_max_are_ignored(pinpad_rig: Rig) -> None:
    pad, customer = pinpad_rig
    customer.script(Pin("123456789"))
    entry = pad.read_pin(PAN, min_digits=4, max_digits=6)
    assert entry.digits == 6
    assert recover_pin_format0(entry.block, PAN, TEST_PIN_KEY) == "123456"


def test_pin_entry_limits_are_validated(pinpad_rig: Rig) -> None:
    pad, customer = pinpad_rig
    customer.script(Pin(SECRET))
    with pytest.raises(LocalProtocolError):
        pad.read_pin(PAN, min_digits=3)
    with pytest.raises(LocalProtocolError):
        pad.read_pin(PAN, min_digits=8, max_digits=6)
    with pytest.raises(LocalProtocolError):
        pad.read_pin("4012-3456-789")
    assert customer.pending() == 1  # refused before the pad consumed any input


def test_clear_keys_during_pin_entry_is_a_script_error(pinpad_rig: Rig) -> None:
    pad, customer = pinpad_rig
    customer.script(Keys("150"))
    with pytest.raises(LocalProtocolError, match="PIN entry"):
        pad.read_pin(PAN)


def test_read_keys_returns_clear_digits(pinpad_rig: Rig, clock: ManualClock) -> None:
    pad, customer = pinpad_rig
    customer.script(Keys("150"), Keys("12345678"), Keys(""))
    start = clock.monotonic()
    first = pad.read_keys(max_digits=6)
    assert (first.outcome, first.keys) == (EntryOutcome.ENTERED, "150")
    assert pad.read_keys(max_digits=6).keys == "123456"  # digits beyond max are ignored
    assert pad.read_keys(max_digits=6) == KeyEntry(EntryOutcome.ENTERED, "")
    assert clock.monotonic() == start
    assert customer.pending() == 0


def test_function_key_ends_clear_entry(pinpad_rig: Rig) -> None:
    pad, customer = pinpad_rig
    customer.script(Fkey("F1"), Fkey("F8"))
    assert pad.read_keys().keys == "F1"
    with pytest.raises(LocalProtocolError, match="function keys"):
        pad.read_keys(function_keys=False)


def test_cancel_and_timeout_in_clear_entry(pinpad_rig: Rig, clock: ManualClock) -> None:
    pad, customer = pinpad_rig
    customer.script(CANCEL, NO_INPUT)
    assert pad.read_keys().outcome is EntryOutcome.CANCELLED
    start = clock.monotonic()
    assert pad.read_keys(timeout=15.0).outcome is EntryOutcome.TIMEOUT
    assert clock.monotonic() - start == pytest.approx(15.0)
    assert pad.read_keys(timeout=5.0).outcome is EntryOutcome.TIMEOUT  # script ran out
    assert clock.monotonic() - start == pytest.approx(20.0)


def test_pin_during_clear_entry_is_refused_without_leaking_it(pinpad_rig: Rig) -> None:
    pad, customer = pinpad_rig
    customer.script(Pin(SECRET))
    with pytest.raises(LocalProtocolError) as info:
        pad.read_keys()
    assert SECRET not in str(info.value)


def test_pending_counts_scripted_entries(pinpad_rig: Rig) -> None:
    pad, customer = pinpad_rig
    assert customer.pending() == 0
    customer.script(Pin(SECRET), Keys("1"))
    customer.script(CANCEL)
    assert customer.pending() == 3
    pad.read_pin(PAN)
    assert customer.pending() == 2


def test_pin_entry_repr_shows_outcome_and_length_only() -> None:
    entry = PinEntry(EntryOutcome.ENTERED, block=bytes.fromhex("1B9C1845EB993A7A"), digits=4)
    assert repr(entry) == "PinEntry(outcome=entered, digits=4)"


# -- sim backend specifics ---------------------------------------------------------------


def test_sim_default_key_is_the_documented_test_key(clock: ManualClock) -> None:
    with SimPinPad(clock) as pad:
        pad.script(Pin(SECRET))
        block = pad.read_pin(PAN).block
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert recover_pin_format0(block, PAN, key) == SECRET


def test_sim_pad_state_never_shows_the_pin(clock: ManualClock) -> None:
    pad = SimPinPad(clock, pin_key="0123456789ABCDEFFEDCBA9876543210")
    pad.script(Pin(SECRET))
    assert SECRET not in repr(vars(pad))
    assert SECRET not in repr(pad)


def test_sim_bad_key_is_a_config_error_without_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        SimPinPad(pin_key="0123456789ABCDEF")
    assert info.value.key == "devices.pinpad.pin_key"
    assert "0123456789ABCDEF" not in str(info.value)
    with pytest.raises(ConfigError):
        SimPinPad(pin_key="not hex at all")


def test_sim_script_entries_are_validated() -> None:
    with pytest.raises(ValueError):
        Pin("12a4")
    with pytest.raises(ValueError):
        Keys("1.5")
    with pytest.raises(ValueError):
        Fkey("F9")
    pad = SimPinPad()
    with pytest.raises(TypeError):
        pad.script("1234")  # type: ignore[arg-type]
    assert pad.pending() == 0


def test_sim_twelve_digit_pan_pads_the_pan_field(clock: ManualClock) -> None:
    # ISO 9564-1: fewer than 12 PAN digits before the check digit are left-padded with zeros.
    with SimPinPad(clock, pin_key=TEST_PIN_KEY) as pad:
        pad.script(Pin(SECRET))
        entry = pad.read_pin("401234567890")
    assert recover_pin_format0(entry.block, "401234567890", TEST_PIN_KEY) == SECRET
