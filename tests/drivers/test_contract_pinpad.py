"""PIN pad contract: encrypted PIN blocks, the PIN never in clear outside the pad, keys.

The key tests hold every backend to the host's reference arithmetic (``terminal.security``):
in tdes mode MACs are ISO 9797-1 alg. 3 under the TAK (the TMK for key exchange) and a
key exchange installs what the host wrapped under the TMK; in aes-dukpt mode PIN blocks
are format 4 under the KSN's PIN key and MACs AES-CMAC under its MAC key. "No usable key"
is :class:`KeyUnavailable` everywhere; asking a pad for another mode's operation is a
:class:`LocalProtocolError`.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

from atm_common.clock import ManualClock
from atm_common.crypto.data import Direction, derive_tdes_data_key, seal, unseal
from atm_common.crypto.dukpt import AesKsn, KeyUsage, aes_initial_key, aes_working_key
from atm_common.crypto.mac import aes_cmac, retail_mac
from atm_common.crypto.pinblock import clear_format0, recover_pin_format0, recover_pin_format4
from atm_common.crypto.tdes import encrypt_block
from atm_common.crypto.tdes import key_check_value as check_value
from atm_common.errors import ConfigError, KeyUnavailable, LocalProtocolError, RemoteProtocolError
from sim.devices.emulator import register
from sim.devices.epp import EppEmulator
from terminal.drivers.pinpad import epp_protocol as proto
from terminal.drivers.pinpad.base import EntryOutcome, KeyEntry, MacKey, PinEntry, PinPad
from terminal.drivers.pinpad.epp import EppPinPad
from terminal.drivers.pinpad.sim import CANCEL, NO_INPUT, Fkey, Keys, Pin, SimPinPad
from terminal.errors import DeviceFault

from .conftest import TEST_PIN_KEY
from .rigs_epp import build_epp

PAN = "4012345678909"
OTHER_PAN = "5413330089604111"
SECRET = "97531"  # digits unlikely to appear by chance in reprs, logs or timestamps

Rig = tuple[PinPad, Any]

# tdes key set: the TMK of the key ceremony, the TAK of the last key exchange.
TMK = bytes.fromhex("C1D0F8FB4958670DBA40AB1F3752EF0D")
TAK = bytes.fromhex("2315208C9110AD402315208C9110AD40")
NEW_TPK = bytes.fromhex("0E3ABFC8F7A1B3C40E3ABFC8F7A1B3C4")  # issued by a key exchange
NEW_TAK = bytes.fromhex("5B4C6D7E8F9A0B1C2D3E4F5061728394")
TDES_KEYS: dict[str, Any] = {"tmk": TMK, "mac_key": TAK}
# aes-dukpt key set: the X9.24-3 test BDK's initial key for one pad.
BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
IK_ID = bytes.fromhex("1234567890123456")
IK = aes_initial_key(BDK, IK_ID)
AES_KEYS: dict[str, Any] = {"security": "aes-dukpt", "ik": IK, "ik_id": IK_ID}

MESSAGE = b"0200\x72\x3c\x44\x81\x28\xe0\x90\x00 an ISO 8583 request" * 3
LONG = bytes(range(256)) * 7  # 1792 bytes: several EPP frames (chunked MAC)


def _wrapped(key: bytes) -> str:
    """``key`` as the host sends it in a key exchange: encrypted under the TMK, hex."""
    return encrypt_block(TMK, key).hex().upper()


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


# -- tdes: MACs and key exchange ----------------------------------------------------------


@pytest.mark.parametrize("data", [b"", MESSAGE, LONG], ids=["empty", "message", "long"])
def test_tdes_mac_with_the_working_key_is_the_retail_mac(pinpad_factory: Any, data: bytes) -> None:
    pad, _ = pinpad_factory(**TDES_KEYS)
    assert pad.mac(data) == retail_mac(TAK, data)
    assert pad.mac(data, key=MacKey.WORKING) == retail_mac(TAK, data)


def test_tdes_master_mac_uses_the_tmk(pinpad_factory: Any) -> None:
    pad, _ = pinpad_factory(**TDES_KEYS)
    master = pad.mac(MESSAGE, key=MacKey.MASTER)
    assert master == retail_mac(TMK, MESSAGE)
    assert master != pad.mac(MESSAGE)


def test_tdes_pad_has_no_ksn(pinpad_factory: Any) -> None:
    pad, customer = pinpad_factory(**TDES_KEYS)
    assert pad.next_ksn() is None
    customer.script(Pin(SECRET))
    entry = pad.read_pin(PAN)
    assert (entry.block_format, entry.ksn) == (0, "")


def test_mac_without_its_key_is_key_unavailable(pinpad_factory: Any) -> None:
    pad, _ = pinpad_factory()  # a PIN key only: no TMK, no TAK
    with pytest.raises(KeyUnavailable):
        pad.mac(MESSAGE)
    with pytest.raises(KeyUnavailable):
        pad.mac(LONG, key=MacKey.MASTER)


def test_key_exchange_installs_the_keys_wrapped_under_the_tmk(pinpad_factory: Any) -> None:
    pad, customer = pinpad_factory(tmk=TMK, pin_key=None)
    kcvs = pad.install_working_keys(_wrapped(NEW_TPK), _wrapped(NEW_TAK).lower())
    assert kcvs == {"TPKKCV": check_value(NEW_TPK), "TAKKCV": check_value(NEW_TAK)}
    customer.script(Pin(SECRET))
    entry = pad.read_pin(PAN)
    assert recover_pin_format0(entry.block, PAN, NEW_TPK) == SECRET
    assert pad.mac(MESSAGE) == retail_mac(NEW_TAK, MESSAGE)
    assert pad.mac(MESSAGE, key=MacKey.MASTER) == retail_mac(TMK, MESSAGE)  # TMK unchanged


def test_key_exchange_replaces_preloaded_working_keys(pinpad_factory: Any) -> None:
    pad, customer = pinpad_factory(**TDES_KEYS)
    pad.install_working_keys(_wrapped(NEW_TPK), _wrapped(NEW_TAK))
    customer.script(Pin(SECRET))
    assert recover_pin_format0(pad.read_pin(PAN).block, PAN, NEW_TPK) == SECRET
    assert pad.mac(MESSAGE) == retail_mac(NEW_TAK, MESSAGE)


def test_key_exchange_needs_the_tmk(pinpad_factory: Any) -> None:
    pad, _ = pinpad_factory()
    with pytest.raises(KeyUnavailable):
        pad.install_working_keys(_wrapped(NEW_TPK), _wrapped(NEW_TAK))


def test_key_exchange_refuses_malformed_keys_without_echoing_them(pinpad_factory: Any) -> None:
    pad, _ = pinpad_factory(**TDES_KEYS)
    for tpk, tak in ((_wrapped(NEW_TPK)[:30], _wrapped(NEW_TAK)), ("secret-not-hex", "00" * 16)):
        with pytest.raises(LocalProtocolError) as info:
            pad.install_working_keys(tpk, tak)
        assert tpk not in str(info.value) and "secret" not in str(info.value)
    assert pad.mac(MESSAGE) == retail_mac(TAK, MESSAGE)  # nothing was replaced


# -- aes-dukpt: format 4 PIN blocks, KSNs, CMACs ----------------------------------------


def _counter(ksn: str | None) -> int:
    assert ksn is not None
    parsed = AesKsn.parse(ksn)
    assert parsed.initial_key_id == IK_ID
    return parsed.counter


def test_dukpt_pin_blocks_are_format4_under_each_transaction_key(pinpad_factory: Any) -> None:
    pad, customer = pinpad_factory(**AES_KEYS)
    customer.script(Pin(SECRET), CANCEL, Pin(SECRET))
    first = pad.read_pin(PAN)
    assert pad.read_pin(PAN).outcome is EntryOutcome.CANCELLED  # costs no counter
    second = pad.read_pin(OTHER_PAN)
    assert (_counter(first.ksn), _counter(second.ksn)) == (1, 2)
    for entry, pan in ((first, PAN), (second, OTHER_PAN)):
        assert (entry.block_format, entry.digits, len(entry.block)) == (4, 5, 16)
        key = aes_working_key(IK, AesKsn.parse(entry.ksn), KeyUsage.PIN_ENCRYPTION)
        assert recover_pin_format4(entry.block, pan, key) == SECRET
        assert entry.ksn not in repr(entry) and entry.block.hex() not in repr(entry).lower()


def test_dukpt_next_ksn_increments_and_shares_the_counter_with_pins(pinpad_factory: Any) -> None:
    pad, customer = pinpad_factory(**AES_KEYS)
    assert [_counter(pad.next_ksn()) for _ in range(3)] == [1, 2, 3]
    customer.script(Pin(SECRET))
    assert _counter(pad.read_pin(PAN).ksn) == 4
    assert _counter(pad.next_ksn()) == 5


@pytest.mark.parametrize("data", [MESSAGE, LONG], ids=["message", "long"])
def test_dukpt_mac_is_the_cmac_under_the_ksns_mac_key(pinpad_factory: Any, data: bytes) -> None:
    pad, _ = pinpad_factory(**AES_KEYS)
    first, ksn = pad.next_ksn(), pad.next_ksn()
    assert ksn is not None and first is not None
    key = aes_working_key(IK, AesKsn.parse(ksn), KeyUsage.MAC_BOTH)
    assert pad.mac(data, ksn=ksn) == aes_cmac(key, data)[:8]
    assert pad.mac(data, ksn=ksn.lower()) == aes_cmac(key, data)[:8]
    assert pad.mac(data, ksn=first) != pad.mac(data, ksn=ksn)  # an earlier KSN is still ours
    assert _counter(pad.next_ksn()) == 3  # MACs never advance the counter


def test_dukpt_mac_with_a_foreign_future_or_no_ksn_is_key_unavailable(
    pinpad_factory: Any,
) -> None:
    pad, _ = pinpad_factory(**AES_KEYS)
    pad.next_ksn()
    foreign = AesKsn(bytes.fromhex("FFEEDDCCBBAA9988"), 1).hex()
    future = AesKsn(IK_ID, 99).hex()
    for ksn in (foreign, future, None):
        with pytest.raises(KeyUnavailable):
            pad.mac(MESSAGE, ksn=ksn)


# -- sealed private data (field 63 of card-session answers, snapshot advices) -------------


SEALED_PLAINTEXT = b"EV=2;REF=evr-sample".ljust(64, b"\x00")


def test_tdes_pad_opens_what_the_host_sealed_and_seals_for_it(pinpad_factory: Any) -> None:
    pad, _ = pinpad_factory(**TDES_KEYS)
    response_key = derive_tdes_data_key(TAK, Direction.RESPONSE)
    assert pad.decrypt_response_data(seal(response_key, SEALED_PLAINTEXT)) == SEALED_PLAINTEXT
    advice = pad.encrypt_advice_data(b"a snapshot part")
    assert unseal(derive_tdes_data_key(TAK, Direction.ADVICE), advice) == b"a snapshot part"
    with pytest.raises(ValueError):  # each direction has its own key
        unseal(response_key, advice)


def test_sealed_data_under_another_key_does_not_open(pinpad_factory: Any) -> None:
    pad, _ = pinpad_factory(**TDES_KEYS)
    foreign = seal(derive_tdes_data_key(NEW_TAK, Direction.RESPONSE), SEALED_PLAINTEXT)
    with pytest.raises(ValueError):
        pad.decrypt_response_data(foreign)
    tampered = bytearray(seal(derive_tdes_data_key(TAK, Direction.RESPONSE), SEALED_PLAINTEXT))
    tampered[-1] ^= 0x01
    with pytest.raises(ValueError):
        pad.decrypt_response_data(bytes(tampered))


def test_dukpt_pad_seals_under_the_ksns_data_keys(pinpad_factory: Any) -> None:
    pad, _ = pinpad_factory(**AES_KEYS)
    ksn = pad.next_ksn()
    assert ksn is not None
    parsed = AesKsn.parse(ksn)
    response_key = aes_working_key(IK, parsed, Direction.RESPONSE.dukpt_usage)
    sealed = seal(response_key, SEALED_PLAINTEXT)
    assert pad.decrypt_response_data(sealed, ksn=ksn) == SEALED_PLAINTEXT
    advice = pad.encrypt_advice_data(b"a snapshot part", ksn=ksn)
    advice_key = aes_working_key(IK, parsed, Direction.ADVICE.dukpt_usage)
    assert unseal(advice_key, advice) == b"a snapshot part"


def test_dukpt_pad_refuses_a_tdes_key_exchange(pinpad_factory: Any) -> None:
    pad, customer = pinpad_factory(**AES_KEYS)
    with pytest.raises(LocalProtocolError):
        pad.install_working_keys(_wrapped(NEW_TPK), _wrapped(NEW_TAK))
    customer.script(Pin(SECRET))
    assert pad.read_pin(PAN).block_format == 4  # still a working DUKPT pad


@pytest.mark.parametrize("keys", [TDES_KEYS, AES_KEYS], ids=["tdes", "aes-dukpt"])
def test_no_key_pin_or_block_in_logs(
    pinpad_factory: Any, keys: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    pad, customer = pinpad_factory(**keys)
    customer.script(Pin(SECRET))
    with caplog.at_level(logging.DEBUG):
        entry = pad.read_pin(PAN)
        if entry.ksn:
            mac = pad.mac(LONG, ksn=entry.ksn)
        else:
            mac = pad.mac(LONG)
            pad.install_working_keys(_wrapped(NEW_TPK), _wrapped(NEW_TAK))
    assert caplog.records
    text = caplog.text.upper()
    secrets = [SECRET, entry.block.hex(), mac.hex(), _wrapped(NEW_TPK), _wrapped(NEW_TAK)]
    secrets += [k.hex() for k in (TMK, TAK, NEW_TPK, NEW_TAK, IK, TEST_PIN_KEY)]
    for secret in secrets:
        assert secret.upper() not in text


# -- epp backend specifics: the wire under the contract ---------------------------------

_names = itertools.count(1)


class _LoseAnswer:
    """Line noise: garbles the pad's answer to the first command starting with ``prefix``
    (after the pad acted on it), so the driver must resend a command already applied."""

    def __init__(self, emulator: EppEmulator, prefix: bytes) -> None:
        self.emulator, self.prefix, self.hit = emulator, prefix, False

    def receive(self, data: bytes) -> bytes:
        answer = self.emulator.receive(data)
        if not self.hit and data[4 : 4 + len(self.prefix)] == self.prefix:
            self.hit = True
            return answer[:-1] + (b"0" if answer[-1:] != b"0" else b"1")
        return answer

    def poll(self, wait: float) -> bytes:
        return self.emulator.poll(wait)


def _lossy(clock: ManualClock, prefix: bytes, **keys: Any) -> tuple[EppPinPad, EppEmulator]:
    emulator = EppEmulator(clock, **keys)
    url = register(f"epp-lossy-{next(_names)}", _LoseAnswer(emulator, prefix))
    return EppPinPad(url, clock=clock), emulator


def test_epp_resent_mac_chunk_is_not_applied_twice(clock: ManualClock) -> None:
    pad, emulator = _lossy(clock, b"MU002", **TDES_KEYS)
    with pad:
        assert pad.mac(LONG) == retail_mac(TAK, LONG)
    assert emulator.commands_received == len(proto.mac_commands(LONG)) + 1


def test_epp_resent_dukpt_pin_block_keeps_its_ksn(clock: ManualClock) -> None:
    pad, emulator = _lossy(clock, b"PB", **AES_KEYS)
    with pad:
        emulator.script(Pin(SECRET))
        entry = pad.read_pin(PAN)
        assert _counter(entry.ksn) == 1
        key = aes_working_key(IK, AesKsn.parse(entry.ksn), KeyUsage.PIN_ENCRYPTION)
        assert recover_pin_format4(entry.block, PAN, key) == SECRET
        assert _counter(pad.next_ksn()) == 2


def test_epp_security_mode_and_current_ksn(clock: ManualClock) -> None:
    tdes, _ = build_epp(clock, **TDES_KEYS)
    aes, _ = build_epp(clock, **AES_KEYS)
    with tdes, aes:
        assert (tdes.security_mode(), tdes.current_ksn()) == ("tdes", None)
        assert aes.security_mode() == "aes-dukpt"
        assert _counter(aes.current_ksn()) == 0
        assert _counter(aes.next_ksn()) == 1
        assert _counter(aes.current_ksn()) == 1  # reading it starts no transaction


def test_epp_key_errors_are_key_unavailable_device_faults(clock: ManualClock) -> None:
    pad, _ = build_epp(clock, **AES_KEYS)
    with pad:
        with pytest.raises(DeviceFault) as info:
            pad.mac(MESSAGE, ksn=AesKsn(IK_ID, 7).hex())
        assert info.value.code == proto.KSN_UNKNOWN and isinstance(info.value, KeyUnavailable)
        with pytest.raises(DeviceFault) as info:
            pad.mac(MESSAGE)
        assert info.value.code == proto.KEY_MISSING
        with pytest.raises(DeviceFault) as info:
            pad.install_working_keys(_wrapped(NEW_TPK), _wrapped(NEW_TAK))
        assert info.value.code == proto.WRONG_MODE and isinstance(info.value, LocalProtocolError)
        with pytest.raises(LocalProtocolError):
            pad.mac(MESSAGE, ksn="not a ksn")  # refused before it is sent


def test_epp_mac_commands_fit_the_frame() -> None:
    (single,) = proto.mac_commands(MESSAGE, MacKey.MASTER)
    assert single == "MAM00" + MESSAGE.hex().upper()
    ksn = AesKsn(IK_ID, 5).hex()
    assert proto.mac_commands(b"\x01", ksn=ksn.lower()) == [f"MAW24{ksn}01"]
    chunked = proto.mac_commands(LONG, ksn=ksn)
    assert chunked[0] == f"MIW24{ksn}" and chunked[-1] == "MF"
    assert [c[:5] for c in chunked[1:-1]] == ["MU001", "MU002", "MU003", "MU004"]
    assert all(len(c) <= proto.MAX_TEXT for c in chunked)
    assert bytes.fromhex("".join(c[5:] for c in chunked[1:-1])) == LONG
    with pytest.raises(LocalProtocolError):
        proto.mac_commands(bytes(proto.MAX_MAC_DATA + 1))
    with pytest.raises(LocalProtocolError):
        proto.mac_commands(b"", ksn="12")


def test_epp_new_responses_parse_strictly() -> None:
    ksn = AesKsn(IK_ID, 3).hex()
    block4 = "4" + "05" + "AB" * 16 + ksn
    assert proto.parse_pin_block(block4) == (4, 5, bytes([0xAB]) * 16, ksn)
    assert proto.parse_pin_block("004" + "CD" * 8) == (0, 4, bytes([0xCD]) * 8, "")
    assert proto.parse_security_mode("aes-dukpt|" + ksn) == ("aes-dukpt", ksn)
    assert proto.parse_next_ksn("") is None
    for bad in ("4" + "05" + "AB" * 8, block4 + "0", "2041234567890ABCDEF", ""):
        with pytest.raises(RemoteProtocolError):
            proto.parse_pin_block(bad)
    for bad in ("aes-dukpt", "tdes|" + ksn, "des"):
        with pytest.raises(RemoteProtocolError):
            proto.parse_security_mode(bad)
    with pytest.raises(RemoteProtocolError):
        proto.parse_working_key_kcvs("08D7B4")


def test_epp_emulator_refuses_out_of_mode_and_out_of_order(clock: ManualClock) -> None:
    tdes, aes, decoder = (
        EppEmulator(clock, tmk=TMK),
        EppEmulator(clock, **AES_KEYS),
        proto.Decoder(),
    )

    def ask(pad: EppEmulator, text: str) -> str:
        (frame,) = decoder.feed(pad.receive(proto.encode_frame(text)))
        assert isinstance(frame, proto.Frame)
        return frame.text

    assert ask(tdes, "NK") == "NK00"
    assert ask(tdes, "SM") == "SM00tdes"
    assert ask(tdes, "MU001AB") == "MUE6"  # no MI first
    assert ask(tdes, "MF") == "MFE6"
    assert ask(tdes, "MIW00") == "MI00"
    assert ask(tdes, "MU002AB") == "MUE6"  # chunks are numbered from 001, in order
    assert ask(tdes, "MU001A B") == "MUE6"  # strict hex
    assert ask(tdes, "MAX00") == "MAE6"  # no such key selector
    assert ask(tdes, "LC011" + TMK.hex()) == "LCE6"  # components build only the TMK
    assert ask(tdes, "PB4") == "PBE5"
    assert ask(aes, "LC001" + TMK.hex()) == "LCEB"
    assert ask(aes, "LK0100" + TMK.hex()) == "LKEB"
    assert ask(aes, "WK" + "00" * 32) == "WKEB"
    assert ask(aes, "PB0") == "PBE5"


def test_epp_emulator_key_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        EppEmulator(security="aes-dukpt")  # no initial key
    with pytest.raises(ConfigError):
        EppEmulator(security="3des")
    with pytest.raises(ConfigError):
        EppEmulator(tmk_slot=1)  # the PIN key's slot
    with pytest.raises(ConfigError) as info:
        EppEmulator(mac_key="00112233")
    assert "00112233" not in str(info.value)


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
