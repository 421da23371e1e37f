"""LCDM protocol core (frames, decoders, layouts, error table) and the driver's handshake
against the emulator on a manual clock: retries, NAKs, silence, error codes, partial picks.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atm_common.clock import ManualClock
from atm_common.errors import AtmError, ConfigError, LocalProtocolError, RemoteProtocolError
from sim.devices.emulator import register, unregister
from sim.devices.lcdm import LcdmEmulator
from terminal.drivers.base import DeviceStatus
from terminal.drivers.dispenser import lcdm_protocol as p
from terminal.drivers.dispenser.lcdm import LcdmDispenser
from terminal.errors import DeviceFault, DeviceTimeout, DeviceUnavailable

from .conftest import RIGS
from .rigs_lcdm import build_lcdm
from .test_contract_dispenser import OPS

CASSETTES = ((1000, 100), (2000, 100), (5000, 50))
EVENT_TYPES = (p.Control, p.Response, p.CommandFrame, p.BadFrame)
PARAMS = st.binary(max_size=40).map(lambda b: bytes(x | 0x20 for x in b))


def xor(data: bytes) -> int:
    return functools.reduce(operator.xor, data, 0)


def responses(events: list[p.Event]) -> list[p.Response]:
    return [e for e in events if isinstance(e, p.Response)]


# -- frames ---------------------------------------------------------------------------------


def test_golden_status_and_purge_frames() -> None:
    assert p.encode_command(p.Command.STATUS) == bytes.fromhex("04 30 02 50 03 65")
    assert p.encode_command(p.Command.PURGE) == bytes.fromhex("04 30 02 51 03 64")


def test_dispense_frame_carries_quantities_plus_0x20_and_a_xor_bcc() -> None:
    frame = p.encode_command(p.Command.DISPENSE, p.encode_dispense([1, 2, 0, 3]))
    assert frame[:8] == bytes.fromhex("04 30 02 52 21 22 20 23")
    assert frame[8:-2] == b"\x20" * 11  # TO1, TO2, 9 reserved
    assert frame[-2] == p.ETX and frame[-1] == xor(frame[:-1]) == p.bcc(frame[:-1])


def test_response_frame_layout() -> None:
    frame = p.encode_response(p.Command.DISPENSE, 0x02, b"\x30")
    assert frame[:7] == bytes.fromhex("01 30 02 52 22 30 03")
    assert frame[-1] == xor(frame[:-1])
    assert p.encode_response(p.Command.STATUS)[4] == p.OK


def test_parameters_never_contain_control_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        p.encode_command(p.Command.DISPENSE, b"\x03")
    with pytest.raises(LocalProtocolError):
        p.encode_dispense([224, 0, 0, 0])
    with pytest.raises(LocalProtocolError):
        p.encode_dispense([1, 2, 3])


# -- decoders -------------------------------------------------------------------------------


def test_decoder_reads_a_response_fed_byte_by_byte() -> None:
    frame = p.encode_response(p.Command.STATUS, 0, b"\x28")
    decoder = p.ResponseDecoder()
    events = [e for b in frame for e in decoder.feed(bytes([b]))]
    assert events == [p.Response(p.Command.STATUS, 0, b"\x28")]


def test_decoder_gives_controls_and_survives_garbage() -> None:
    frame = p.encode_response(p.Command.PURGE, 0x0E, b"")
    events = p.ResponseDecoder().feed(b"\x06xyz" + frame + b"\xff\x15\x04")
    assert events[0] is p.Control.ACK
    assert isinstance(events[1], p.BadFrame) and not events[1].framed
    assert events[1].data == b"xyz"
    assert events[2] == p.Response(p.Command.PURGE, 0x0E, b"")
    assert isinstance(events[3], p.BadFrame)
    assert events[4:] == [p.Control.NAK, p.Control.EOT]


def test_decoder_flags_a_bad_bcc_and_reads_the_next_frame() -> None:
    good = p.encode_response(p.Command.STATUS)
    bad = good[:-1] + bytes([good[-1] ^ 0x55])
    events = p.ResponseDecoder().feed(bad + good)
    assert isinstance(events[0], p.BadFrame) and events[0].framed
    assert "BCC" in events[0].reason
    assert events[1:] == [p.Response(p.Command.STATUS, 0, b"")]


@pytest.mark.parametrize(
    "broken",
    [
        bytes.fromhex("01 30 02 50"),  # cut short by the next SOH
        bytes.fromhex("01 31"),  # wrong device id
        bytes.fromhex("01 30 50"),  # no STX
        bytes.fromhex("01 30 02 50 03"),  # body shorter than RSP + ERROR
        bytes.fromhex("01 30 02") + b"\x50" * 70,  # far too long
    ],
)
def test_decoder_resynchronises_after_a_broken_frame(broken: bytes) -> None:
    good = p.encode_response(p.Command.STATUS)
    events = p.ResponseDecoder().feed(broken + good)
    assert any(isinstance(e, p.BadFrame) and e.framed for e in events)
    assert responses(events) == [p.Response(p.Command.STATUS, 0, b"")]


def test_command_decoder_reads_what_the_driver_sends() -> None:
    frame = p.encode_command(p.Command.DISPENSE, p.encode_dispense([0, 4, 0, 0]))
    events = p.CommandDecoder().feed(b"\x06" + frame[:5] + frame[5:] + b"\x15")
    assert events[0] is p.Control.ACK and events[2] is p.Control.NAK
    assert isinstance(events[1], p.CommandFrame)
    assert p.decode_dispense(events[1].params) == (0, 4, 0, 0)


@settings(max_examples=300)
@given(data=st.binary(max_size=400), chunk=st.integers(1, 17))
def test_random_bytes_give_only_events_whatever_the_chunking(data: bytes, chunk: int) -> None:
    whole = p.ResponseDecoder().feed(data)
    decoder = p.ResponseDecoder()
    pieces = [e for i in range(0, len(data), chunk) for e in decoder.feed(data[i : i + chunk])]
    assert all(isinstance(e, EVENT_TYPES) for e in whole + pieces)
    kept = (p.Control, p.Response)
    assert [e for e in whole if isinstance(e, kept)] == [e for e in pieces if isinstance(e, kept)]
    assert all(isinstance(e, EVENT_TYPES) for e in p.CommandDecoder().feed(data))


@given(command=st.sampled_from(list(p.Command)), error=st.integers(0, 0xDF), params=PARAMS)
def test_response_round_trip(command: int, error: int, params: bytes) -> None:
    frame = p.encode_response(command, error, params)
    assert p.ResponseDecoder().feed(frame) == [p.Response(command, error, params)]


@given(command=st.sampled_from(list(p.Command)), params=PARAMS)
def test_command_round_trip(command: int, params: bytes) -> None:
    assert p.CommandDecoder().feed(p.encode_command(command, params)) == [
        p.CommandFrame(command, params)
    ]


@given(
    before=st.binary(max_size=60).filter(lambda b: p.ETX not in b),
    after=st.binary(max_size=60),
    params=PARAMS,
)
def test_a_frame_survives_garbage_around_it(before: bytes, after: bytes, params: bytes) -> None:
    frame = p.encode_response(p.Command.DISPENSE, 0, params)
    events = p.ResponseDecoder().feed(before + frame + after)
    assert p.Response(p.Command.DISPENSE, 0, params) in events


# -- layouts and the error table ------------------------------------------------------------


def test_counts_layout_round_trip() -> None:
    counts = (p.PositionCount(3, 1), p.PositionCount(0, 0, False), p.PositionCount(223, 0))
    counts += (p.PositionCount(0, 2),)
    params = p.encode_counts(counts, reserved_tail=True)
    assert params[0] == 0x30 and params[1:4] == bytes([0x23, 0x21, 0x31])
    assert params[4:7] == bytes([0x20, 0x20, 0x30])  # cassette 2 removed
    assert p.decode_counts(params) == counts
    assert [c.picked for c in counts] == [4, 0, 223, 2]
    with pytest.raises(RemoteProtocolError):
        p.decode_counts(params[:5])


def test_status_layout_round_trip() -> None:
    sensors = (p.PositionSensors(), p.PositionSensors(True, True), p.PositionSensors(False))
    report = p.StatusReport(True, False, (*sensors, p.PositionSensors()))
    params = p.encode_status(report)
    assert params[0] == 0x28  # exit sensor blocked
    assert p.decode_status(params) == report
    with pytest.raises(RemoteProtocolError):
        p.decode_status(params[:3])


@pytest.mark.parametrize("code", sorted(p.ERROR_CODES))
def test_every_error_code_maps_to_a_device_fault(code: int) -> None:
    fault = p.device_fault(code, p.Command.DISPENSE)
    assert isinstance(fault, DeviceFault)
    assert fault.code == code and fault.device == "dispenser"
    assert p.ERROR_CODES[code].text in str(fault) and "DISPENSE" in str(fault)


def test_unknown_error_code_is_still_a_fault() -> None:
    assert "unknown" in str(p.device_fault(0x77))
    assert "jam" in p.describe_error(0x02)


# -- the handshake, driver against emulator -------------------------------------------------


@pytest.fixture
def rig(clock: ManualClock) -> Iterator[tuple[LcdmDispenser, LcdmEmulator]]:
    device, emulator = build_lcdm(clock, CASSETTES)
    assert isinstance(device, LcdmDispenser)
    with device:
        yield device, emulator


def test_nak_makes_the_driver_resend(rig: tuple[LcdmDispenser, LcdmEmulator]) -> None:
    dispenser, emulator = rig
    emulator.nak_next(3)
    assert len(dispenser.cassettes()) == 3
    assert emulator.commands_received == 4
    emulator.nak_next(4)
    with pytest.raises(RemoteProtocolError, match="STATUS"):
        dispenser.cassettes()


def test_bad_bcc_is_naked_and_the_resend_accepted(
    rig: tuple[LcdmDispenser, LcdmEmulator], clock: ManualClock
) -> None:
    dispenser, emulator = rig
    emulator.garble_next(3)
    assert len(dispenser.cassettes()) == 3
    assert emulator.naks_received == 3 and clock.monotonic() == 0
    emulator.garble_next(4)
    with pytest.raises(RemoteProtocolError, match="STATUS"):
        dispenser.cassettes()


def test_mute_device_times_out_after_the_retries(
    rig: tuple[LcdmDispenser, LcdmEmulator], clock: ManualClock
) -> None:
    dispenser, emulator = rig
    emulator.mute(3)
    dispenser.cassettes()
    assert clock.monotonic() == pytest.approx(3.0)  # three ack timeouts, then the 4th try
    emulator.mute(10)
    start, sent = clock.monotonic(), emulator.commands_received
    with pytest.raises(DeviceTimeout, match=r"no ACK to STATUS \(0x50\) after 4 attempts"):
        dispenser.cassettes()
    assert clock.monotonic() - start == pytest.approx(4.0)
    assert emulator.commands_received - sent == 4
    assert dispenser.status() is DeviceStatus.OFFLINE


@pytest.mark.parametrize("code", sorted(p.ERROR_CODES))
def test_error_code_on_status_refuses_the_dispense(
    rig: tuple[LcdmDispenser, LcdmEmulator], code: int
) -> None:
    dispenser, emulator = rig
    emulator.inject_error(code)
    with pytest.raises(DeviceFault) as info:
        dispenser.dispense(1000)
    assert info.value.code == code
    assert emulator.stacked_amount == 0
    assert dispenser.dispense(1000).complete  # one-shot: the next STATUS is clean


@pytest.mark.parametrize("code", sorted(p.ERROR_CODES))
def test_error_code_on_dispense_is_the_results_fault(
    rig: tuple[LcdmDispenser, LcdmEmulator], code: int
) -> None:
    dispenser, emulator = rig
    emulator.inject_error(code, command=p.Command.DISPENSE)
    result = dispenser.dispense(8000)
    assert result.fault is not None and result.fault.code == code
    assert dict(result.notes) == {} and result.amount == 0
    assert emulator.cassette_amount == emulator.initial_amount


@pytest.mark.parametrize("k", range(7))
def test_jam_after_k_notes_reports_exactly_k_notes(
    rig: tuple[LcdmDispenser, LcdmEmulator], k: int
) -> None:
    dispenser, emulator = rig
    emulator.inject_jam(after_notes=k)
    result = dispenser.dispense(23000)  # picked 1000, 2000, then 4 x 5000 (slot order)
    assert sum(result.notes.values()) == k
    assert result.amount == [0, 1000, 3000, 8000, 13000, 18000, 23000][k]
    assert result.amount == emulator.stacked_amount
    assert (result.fault is None) == (k == 6)
    if result.fault is not None:
        assert result.fault.code == 0x02 and dispenser.status() is DeviceStatus.FAULT
    counts = {c.index: c.count for c in dispenser.cassettes()}
    assert counts == emulator.cassette_counts
    assert emulator.invariant_holds()


def test_rejects_are_counted_out_of_the_cassette(clock: ManualClock) -> None:
    device, emulator = build_lcdm(clock, ((1000, 50), (5000, 50)))
    with device as dispenser:
        emulator.inject_reject(2)
        result = dispenser.dispense(6000)
        assert result.complete and dict(result.notes) == {1: 1, 2: 1}
        assert emulator.rejected == {1: 2} and emulator.rejected_amount == 2000
        assert [c.count for c in dispenser.cassettes()] == [47, 49]
        assert emulator.invariant_holds()


def test_picking_takes_time_per_note(clock: ManualClock) -> None:
    device, _ = build_lcdm(clock, ((1000, 50),), seconds_per_note=0.5)
    with device as dispenser:
        dispenser.dispense(7000)
        assert clock.monotonic() == pytest.approx(3.5)


def test_slow_answer_is_recovered_with_last_status(clock: ManualClock) -> None:
    device, emulator = build_lcdm(clock, CASSETTES, seconds_per_note=1.0, response_timeout=2.0)
    with device as dispenser:
        result = dispenser.dispense(25000)  # 5 notes: due after 5 s, the driver waits 2 s
        assert result.complete and dict(result.notes) == {3: 5}
        assert clock.monotonic() == pytest.approx(2.0)
        assert [c.count for c in dispenser.cassettes()] == [100, 100, 45]
        assert emulator.stacked_amount == 25000


def test_garbled_dispense_answer_is_recovered(rig: tuple[LcdmDispenser, LcdmEmulator]) -> None:
    dispenser, emulator = rig
    emulator.garble_next(4, command=p.Command.DISPENSE)
    result = dispenser.dispense(8000)
    assert result.complete and result.amount == emulator.stacked_amount == 8000


def test_lost_dispense_answer_without_last_status_raises(
    rig: tuple[LcdmDispenser, LcdmEmulator],
) -> None:
    dispenser, emulator = rig
    emulator.garble_next(4, command=p.Command.DISPENSE)
    emulator.mute(4, command=p.Command.LAST_STATUS)
    with pytest.raises(RemoteProtocolError, match="DISPENSE"):
        dispenser.dispense(8000)
    assert emulator.stacked_amount == 8000  # the notes moved; the terminal must reconcile


def test_sensors_removed_cassette_near_end_and_reject_tray(
    rig: tuple[LcdmDispenser, LcdmEmulator],
) -> None:
    dispenser, emulator = rig
    emulator.near_end(1)
    assert [c.near_end for c in dispenser.cassettes()] == [True, False, False]
    assert dispenser.status() is DeviceStatus.DEGRADED
    emulator.near_end(1, on=False)
    emulator.cassette_removed(3)
    assert [c.index for c in dispenser.cassettes()] == [1, 2]
    assert dispenser.status() is DeviceStatus.DEGRADED
    assert dict(dispenser.dispense(10000).notes) == {2: 5}
    emulator.remove_reject_tray()
    assert dispenser.status() is DeviceStatus.FAULT


def test_reset_command_clears_a_latched_jam(rig: tuple[LcdmDispenser, LcdmEmulator]) -> None:
    dispenser, emulator = rig
    emulator.inject_jam(after_notes=0)
    assert dispenser.dispense(1000).fault is not None
    assert dispenser.status() is DeviceStatus.FAULT
    dispenser.reset()
    assert emulator.fault == 0 and dispenser.status() is DeviceStatus.OK


def test_each_present_plays_one_scripted_customer(
    rig: tuple[LcdmDispenser, LcdmEmulator], clock: ManualClock
) -> None:
    dispenser, emulator = rig
    dispenser.dispense(3000)
    emulator.script_take_cash(False)
    emulator.script_take_cash(True)
    start = clock.monotonic()
    assert dispenser.present(take_timeout=2.0) is False
    assert clock.monotonic() - start == pytest.approx(2.0)
    dispenser.cassettes()  # a STATUS alone does not make the customer act
    assert emulator.stacked_amount == 3000
    assert dispenser.present(take_timeout=2.0) is True
    assert emulator.handed_out_amount == 3000 and emulator.invariant_holds()


def test_a_dead_line_is_unavailable_and_offline(rig: tuple[LcdmDispenser, LcdmEmulator]) -> None:
    dispenser, _ = rig
    port = dispenser._port
    assert port is not None
    port.close()  # as if the USB adapter were pulled
    with pytest.raises(DeviceUnavailable):
        dispenser.cassettes()
    assert dispenser.status() is DeviceStatus.OFFLINE


def test_replenish_and_config_errors(rig: tuple[LcdmDispenser, LcdmEmulator]) -> None:
    dispenser, _ = rig
    dispenser.replenish([10, 20, 30])
    assert [c.count for c in dispenser.cassettes()] == [10, 20, 30]
    with pytest.raises(LocalProtocolError):
        dispenser.replenish([1])
    bad: list[dict[str, Any]] = [
        {"denominations": [], "counts": []},
        {"denominations": [1, 2, 3, 4, 5], "counts": [1] * 5},
        {"denominations": [1000], "counts": [1, 2]},
        {"denominations": [0], "counts": [1]},
        {"denominations": [1000], "counts": [1], "retries": -1},
    ]
    for options in bad:
        with pytest.raises(ConfigError):
            LcdmDispenser("sim://x", **options)


# -- byte-exact handshake with a scripted device ---------------------------------------------


IDLE_STATUS = p.encode_status(p.StatusReport(False, False, (p.PositionSensors(),) * 4))


class ScriptedDevice:
    """Answers each write from a script and records what the driver wrote."""

    def __init__(self, clock: ManualClock, answers: list[bytes]) -> None:
        self.clock, self.answers = clock, answers
        self.written: list[bytes] = []

    def receive(self, data: bytes) -> bytes:
        self.written.append(data)
        return self.answers.pop(0) if self.answers else b""

    def poll(self, wait: float) -> bytes:
        self.clock.advance(wait)
        return b""


def scripted(clock: ManualClock, answers: list[bytes], name: str) -> Iterator[Any]:
    device = ScriptedDevice(clock, answers)
    url = register(name, device)
    try:
        with LcdmDispenser(url, clock, denominations=[1000], counts=[5]) as dispenser:
            yield dispenser, device
    finally:
        unregister(name)


def test_driver_naks_a_bad_frame_acks_the_good_one_and_takes_eot(clock: ManualClock) -> None:
    good = p.encode_response(p.Command.STATUS, 0, IDLE_STATUS)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    for dispenser, device in scripted(clock, [b"\x06" + bad, good, b"\x04"], "lcdm-script-1"):
        assert [c.count for c in dispenser.cassettes()] == [5]
        assert device.written == [p.encode_command(p.Command.STATUS), b"\x15", b"\x06"]
        assert clock.monotonic() == 0


def test_missing_eot_is_tolerated_and_costs_one_ack_timeout(clock: ManualClock) -> None:
    good = p.encode_response(p.Command.STATUS, 0, IDLE_STATUS)
    for dispenser, _ in scripted(clock, [b"\x06" + good], "lcdm-script-2"):
        assert len(dispenser.cassettes()) == 1
        assert clock.monotonic() == pytest.approx(1.0)


class NoiseDevice:
    """Answers every write with a chunk of random bytes; time passes on every read."""

    def __init__(self, clock: ManualClock, chunks: list[bytes]) -> None:
        self.clock, self.chunks = clock, chunks

    def receive(self, data: bytes) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def poll(self, wait: float) -> bytes:
        self.clock.advance(wait)
        return self.chunks.pop(0) if self.chunks else b""


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40), max_size=30))
def test_any_device_babble_ends_in_a_project_error_or_an_answer(chunks: list[bytes]) -> None:
    clock = ManualClock()
    url = register("lcdm-noise", NoiseDevice(clock, chunks))
    try:
        dispenser = LcdmDispenser(url, clock, denominations=[1000], counts=[5])
        with dispenser, contextlib.suppress(AtmError):
            dispenser.cassettes()
        # bounded: 4 ACK waits, then a response wait and its NAK grace periods at most
        assert clock.monotonic() <= 4 * 1.0 + 60.0 + 4 * 1.0 + 1.0
    finally:
        unregister("lcdm-noise")


# -- back to back with the in-process simulator ------------------------------------------------


def _trace(backend: str, ops: list[tuple[str, int]]) -> list[object]:
    """Everything the terminal and the customer could observe, op by op."""
    device, customer = RIGS["dispenser"][backend](ManualClock())
    dispenser: Any = device
    seen: list[object] = []
    pending_rejects = 0
    with dispenser:
        for op, arg in ops:
            try:
                if op == "dispense":
                    result = dispenser.dispense(arg)
                    pending_rejects = 0  # only a dispense that ran used them up
                    seen.append((dict(result.notes), result.fault and result.fault.code))
                elif op == "present":
                    customer.script_take_cash(bool(arg))
                    seen.append(dispenser.present(take_timeout=5.0))
                elif op == "retract":
                    seen.append(dispenser.retract())
                elif op == "reject" and pending_rejects + arg <= 10:  # the LCDM stops at 10
                    pending_rejects += arg
                    customer.inject_reject(arg)
                elif op == "jam":
                    customer.inject_jam(after_notes=arg)
                elif op == "pick_failure":
                    customer.inject_pick_failure()
                elif op == "reset":
                    customer.reset()
            except AtmError as exc:
                seen.append((type(exc).__name__, getattr(exc, "code", None)))
            seen.append(
                (
                    dispenser.status(),
                    [(c.count, c.near_end) for c in dispenser.cassettes()],
                    customer.handed_out_amount,
                    customer.retracted_amount,
                    customer.stacked_amount,
                    customer.rejected_amount,
                )
            )
    return seen


@settings(max_examples=100, deadline=None)
@given(ops=OPS)
def test_lcdm_behaves_exactly_like_the_sim(ops: list[tuple[str, int]]) -> None:
    assert _trace("lcdm", ops) == _trace("sim", ops)
