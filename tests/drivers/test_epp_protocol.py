"""ZT588-style EPP: framing golden bytes, a decoder that survives the wire, key loading with
KCVs, retries and faults through the real driver and the emulator (sim:// + manual clock)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atm_common.clock import ManualClock
from atm_common.crypto.pinblock import recover_pin_format0
from atm_common.crypto.tdes import encrypt_block, key_check_value
from atm_common.errors import AtmError, ConfigError, LocalProtocolError, RemoteProtocolError
from sim.devices.emulator import register
from sim.devices.epp import EppEmulator
from terminal.drivers.base import DeviceStatus
from terminal.drivers.pinpad import epp_protocol as proto
from terminal.drivers.pinpad.base import EntryOutcome
from terminal.drivers.pinpad.epp import EppPinPad
from terminal.drivers.pinpad.sim import Pin
from terminal.errors import DeviceFault, DeviceTimeout

from .rigs_epp import build_epp

PAN = "4012345678909"
SECRET = "97531"
KCV_KEY = "0123456789ABCDEFFEDCBA9876543210"  # TDES KCV vector: 08D7B4
PIN_KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
COMPONENT_2 = "4C4C4C4C4C4C4C4C3E3E3E3E3E3E3E3E"  # odd parity per byte

# -- framing ----------------------------------------------------------------------------------


def test_golden_frame_with_hand_computed_checksum() -> None:
    # "DI": length "002" -> 0x30 ^ 0x30 ^ 0x32 = 0x32; ^ 'D' 0x44 = 0x76; ^ 'I' 0x49 = 0x3F;
    # ^ ETX 0x03 = 0x3C -> checksum digits "3C".
    assert proto.encode_frame("DI") == bytes.fromhex("02 303032 4449 03 3343")
    # "CE": 0x32 ^ 0x43 = 0x71; ^ 0x45 = 0x34; ^ 0x03 = 0x37.
    assert proto.encode_frame("CE")[-2:] == b"37"
    assert proto.checksum(b"002DI\x03") == 0x3C


def test_encoder_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError):
        proto.encode_frame("A\x03B")
    with pytest.raises(LocalProtocolError):
        proto.encode_frame("X" * 1000)
    assert proto.encode_frame("")[:4] == b"\x02000"


def test_decoder_reassembles_a_frame_fed_byte_by_byte() -> None:
    decoder, frame = proto.Decoder(), proto.encode_frame("KV00")
    events = [e for byte in frame for e in decoder.feed(bytes([byte]))]
    assert events == [proto.Frame("KV00")]
    assert decoder.buffered == 0


def test_decoder_keys_between_frames_and_garbage_dropped() -> None:
    decoder = proto.Decoder()
    stream = b"\x00\xff" + proto.encode_frame("PE00") + b"**\r\x1b\x81" + proto.encode_frame("CE00")
    names = [e.name if isinstance(e, proto.Key) else e for e in decoder.feed(stream)]
    assert names == [proto.Frame("PE00"), "*", "*", "ENTER", "CANCEL", "F1", proto.Frame("CE00")]
    assert decoder.discarded == 2


def test_decoder_recovers_after_bad_checksum_and_truncation() -> None:
    good = proto.encode_frame("DI00ZT588|1|1")
    bad_sum = good[:-1] + (b"0" if good[-1:] != b"0" else b"1")
    events = proto.Decoder().feed(bad_sum + good[:7] + good)
    assert [type(e) for e in events] == [proto.BadFrame, proto.BadFrame, proto.Frame]
    assert "checksum" in events[0].reason  # type: ignore[union-attr]


def test_printable_bytes_of_a_broken_frame_never_become_digits() -> None:
    events = proto.Decoder().feed(b"\x02005PE0\r")
    assert events == [proto.BadFrame("control byte inside frame text"), proto.Key(0x0D)]
    assert proto.Decoder().feed(b"\x0200X")[0] == proto.BadFrame("length is not 3 decimal digits")


def test_lowercase_checksum_is_accepted_and_frame_repr_hides_text() -> None:
    frame = proto.encode_frame("LC001" + KCV_KEY)
    frame = frame[:-2] + frame[-2:].lower()
    (event,) = proto.Decoder().feed(frame)
    assert isinstance(event, proto.Frame)
    assert KCV_KEY not in repr(event) and "LC" in repr(event)


@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=20))
def test_random_bytes_give_only_events_whatever_the_split(data: bytes, cuts: list[int]) -> None:
    whole = proto.Decoder().feed(data)
    decoder, split, pos = proto.Decoder(), [], 0
    for cut in [*cuts, len(data)]:
        split += decoder.feed(data[pos : pos + cut])
        pos += cut
    split += decoder.feed(data[pos:])
    assert split == whole
    assert all(isinstance(e, proto.Frame | proto.Key | proto.BadFrame) for e in whole)


_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
_items = st.lists(st.one_of(_text, st.sampled_from(sorted(proto.KEY_NAMES))), max_size=12)


@given(_items, st.integers(1, 9))
def test_encode_decode_round_trip(items: list[str | int], chunk: int) -> None:
    stream = b"".join(proto.encode_frame(i) if isinstance(i, str) else bytes([i]) for i in items)
    decoder = proto.Decoder()
    events = [e for n in range(0, len(stream), chunk) for e in decoder.feed(stream[n : n + chunk])]
    expected = [proto.Frame(i) if isinstance(i, str) else proto.Key(i) for i in items]
    assert events == expected


@given(_text)
def test_response_parser_raises_only_project_errors(text: str) -> None:
    with contextlib.suppress(AtmError):
        proto.parse_status(text)


# -- builders, parsers, error table -----------------------------------------------------------


def test_command_builders() -> None:
    assert proto.start_pin_entry(PAN, 1, 4, 12, 29.5) == "PE010412030" + PAN
    assert proto.start_key_entry(6, True, 0.2) == "KE061001"
    assert proto.get_pin_block(0) == "PB0"
    assert proto.load_encrypted(1, 0, bytes(16)) == "LK0100" + "00" * 16
    with pytest.raises(LocalProtocolError):
        proto.get_pin_block(2)
    with pytest.raises(LocalProtocolError):
        proto.load_component(16, 1, bytes(16))
    with pytest.raises(LocalProtocolError):
        proto.start_key_entry(100, False, 1.0)


def test_error_table_maps_to_device_fault_with_code() -> None:
    assert all(code in range(0xE0, 0xF0) for code in proto.ERRORS)
    error = proto.fault(proto.TMK_REQUIRED, "LK")
    assert isinstance(error, DeviceFault) and error.code == 0xE1 and "TMK" in str(error)
    assert proto.parse_status("PBE5") == ("PB", 0xE5, "")
    for bad in ("PB", "ZZ00", "PBxx", "PB42"):
        with pytest.raises(RemoteProtocolError):
            proto.parse_status(bad)
    with pytest.raises(RemoteProtocolError):
        proto.parse_pin_block("0041234")


# -- driver + emulator ------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


_names = itertools.count(1)
Rig = tuple[EppPinPad, EppEmulator]


@pytest.fixture
def rig(clock: ManualClock) -> Iterator[Rig]:
    pad, emulator = build_epp(clock, pin_key=PIN_KEY, response_timeout=1.5, retries=2)
    with pad:
        yield pad, emulator


@pytest.fixture
def blank(clock: ManualClock) -> Iterator[Rig]:
    """A pad with no keys at all, as delivered before the key ceremony."""
    emulator = EppEmulator(clock, pin_key=None)
    with EppPinPad(register(f"epp-blank-{next(_names)}", emulator), clock=clock) as pad:
        yield pad, emulator


def test_kcv_vector() -> None:
    assert key_check_value(bytes.fromhex(KCV_KEY)) == "08D7B4"


def test_key_ceremony_components_then_encrypted_pin_key(blank: Rig) -> None:
    pad, _ = blank
    assert pad.load_component(0, KCV_KEY) == "08D7B4"
    kcv2 = pad.load_component(0, COMPONENT_2, part=2)
    assert pad.load_component(0, COMPONENT_2, part=2) == kcv2  # a resent part is idempotent
    tmk = bytes(
        a ^ b for a, b in zip(bytes.fromhex(KCV_KEY), bytes.fromhex(COMPONENT_2), strict=True)
    )
    tmk = bytes(b ^ 1 if bin(b).count("1") % 2 == 0 else b for b in tmk)  # parity-adjusted
    assert kcv2 == key_check_value(tmk)
    wrapped = encrypt_block(tmk, PIN_KEY).hex()
    assert pad.load_encrypted(1, 0, wrapped) == key_check_value(PIN_KEY)
    assert pad.key_check_values() == {0: kcv2, 1: key_check_value(PIN_KEY)}


def test_key_loading_errors(blank: Rig) -> None:
    pad, _ = blank
    with pytest.raises(DeviceFault) as info:
        pad.load_encrypted(1, 0, KCV_KEY)
    assert info.value.code == proto.TMK_REQUIRED
    with pytest.raises(DeviceFault) as info:
        pad.load_component(0, "00" * 16)  # even parity
    assert info.value.code == proto.KEY_PARITY
    with pytest.raises(DeviceFault) as info:
        pad.read_pin(PAN)  # no PIN key in slot 1
    assert info.value.code == proto.KEY_MISSING
    with pytest.raises(LocalProtocolError) as local:
        pad.load_component(0, "secret-not-hex")
    assert "secret" not in str(local.value)


def test_device_info_and_pin_block(rig: Rig) -> None:
    pad, emulator = rig
    assert pad.device_info() == {"model": "ZT588-SIM", "serial": "SIM00000001", "firmware": "1.0.0"}
    emulator.script(Pin(SECRET))
    entry = pad.read_pin(PAN)
    assert (entry.outcome, entry.digits) == (EntryOutcome.ENTERED, 5)
    assert recover_pin_format0(entry.block, PAN, PIN_KEY) == SECRET


def test_unsupported_block_format_is_e5(clock: ManualClock) -> None:
    pad, emulator = build_epp(clock, pin_key=PIN_KEY, pin_block_format=1)
    with pad:
        emulator.script(Pin(SECRET))
        with pytest.raises(DeviceFault) as info:
            pad.read_pin(PAN)
    assert info.value.code == proto.BAD_FORMAT


def test_injected_error_is_a_device_fault(rig: Rig) -> None:
    pad, emulator = rig
    emulator.inject_error(0xEF)
    with pytest.raises(DeviceFault) as info:
        pad.device_info()
    assert info.value.code == 0xEF and info.value.device == "pinpad"
    with pytest.raises(ValueError):
        emulator.inject_error(0x20)


def test_bad_checksum_makes_the_driver_resend(rig: Rig) -> None:
    pad, emulator = rig
    emulator.garble_next(1)
    assert pad.device_info()["model"] == "ZT588-SIM"
    assert emulator.commands_received == 2
    emulator.garble_next(1)  # the PE acknowledgement: the resent start is re-acknowledged
    emulator.script(Pin(SECRET))
    entry = pad.read_pin(PAN)
    assert recover_pin_format0(entry.block, PAN, PIN_KEY) == SECRET
    assert emulator.pending() == 0


def test_corruption_beyond_the_budget_is_a_protocol_error(rig: Rig) -> None:
    pad, emulator = rig
    emulator.garble_next(3)
    with pytest.raises(RemoteProtocolError, match="3 attempts"):
        pad.device_info()
    assert pad.status() is DeviceStatus.FAULT
    assert pad.device_info()["serial"] == "SIM00000001"
    assert pad.status() is DeviceStatus.OK


def test_corrupt_request_is_answered_e9_and_resent(clock: ManualClock) -> None:
    emulator = EppEmulator(clock)

    class LineNoise:
        """Flips one byte of the first frame the terminal writes."""

        hits = 0

        def receive(self, data: bytes) -> bytes:
            if not self.hits:
                self.hits += 1
                data = data[:5] + b"\x7e" + data[6:]
            return emulator.receive(data)

        def poll(self, wait: float) -> bytes:
            return emulator.poll(wait)

    with EppPinPad(register(f"epp-noise-{next(_names)}", LineNoise()), clock=clock) as pad:
        assert pad.device_info()["model"] == "ZT588-SIM"
    assert emulator.commands_received == 1  # the corrupt one never decoded


def test_mute_device_times_out_on_the_clock(rig: Rig, clock: ManualClock) -> None:
    pad, emulator = rig
    emulator.mute(1)
    start = clock.monotonic()
    assert pad.key_check_values() == {1: key_check_value(PIN_KEY)}
    assert clock.monotonic() - start == pytest.approx(1.5)
    emulator.mute(3)
    start = clock.monotonic()
    with pytest.raises(DeviceTimeout, match="3 attempts"):
        pad.device_info()
    assert clock.monotonic() - start == pytest.approx(4.5)
    assert pad.status() is DeviceStatus.FAULT


def test_key_presses_take_time_when_configured(clock: ManualClock) -> None:
    pad, emulator = build_epp(clock, pin_key=PIN_KEY, key_interval=0.25)
    with pad:
        emulator.script(Pin("1234"))
        start = clock.monotonic()
        assert pad.read_pin(PAN).digits == 4
    assert clock.monotonic() - start == pytest.approx(5 * 0.25)  # four digits and ENTER


def test_emulator_answers_pad_side_errors(clock: ManualClock) -> None:
    emulator, decoder = EppEmulator(clock), proto.Decoder()

    def ask(text: str) -> str:
        (frame,) = decoder.feed(emulator.receive(proto.encode_frame(text)))
        assert isinstance(frame, proto.Frame)
        return frame.text

    assert ask("PB0") == "PBE4"  # no PIN entered
    assert ask("XX") == "XXE0"
    assert ask("PE0104120" + "05" + PAN) == "PE00"
    assert ask("PE0104120" + "09" + PAN) == "PEE8"  # busy with another entry
    assert emulator.poll(10.0) == b""  # the customer does nothing for 10 s
    assert ask("PB0") == "PBE3"  # the pad's own 5 s backstop passed
    assert ask("PB3") == "PBE5"
    assert ask("LC0012") == "LCE6"


def test_no_key_pin_or_block_in_any_log_record(
    blank: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    pad, emulator = blank
    wrapped = encrypt_block(bytes.fromhex(KCV_KEY), PIN_KEY).hex().upper()
    with caplog.at_level(logging.DEBUG):
        pad.load_component(0, KCV_KEY)
        pad.load_encrypted(1, 0, wrapped)
        emulator.garble_next(1)
        emulator.script(Pin(SECRET))
        entry = pad.read_pin(PAN)
    text = caplog.text.upper()
    assert caplog.records  # the calls did log
    for secret in (KCV_KEY, wrapped, PIN_KEY.hex().upper(), SECRET, entry.block.hex().upper()):
        assert secret not in text


def test_bad_driver_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        EppPinPad("sim://unused", retries=-1)
    with pytest.raises(ConfigError):
        EppPinPad("sim://unused", pin_block_format=2)
