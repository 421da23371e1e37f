"""Field diagnostics of PIN pads (terminal.diag.pinpad) against the EPP emulator.

Why through the emulator: the report and the key ceremony are what a field engineer runs
on a real pad, so they must go through the real driver and wire protocol; the checks say
what may be shown (KCVs, mode, KSN) and what never may (keys, components).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from atm_common.clock import ManualClock
from atm_common.crypto.dukpt import AesKsn, aes_initial_key
from atm_common.crypto.mac import retail_mac
from atm_common.crypto.pinblock import recover_pin_format0
from atm_common.crypto.tdes import encrypt_block
from atm_common.crypto.tdes import key_check_value as check_value
from atm_common.errors import LocalProtocolError
from sim.devices.epp import EppEmulator
from terminal.diag.pinpad import KeyCheckMismatch, device_report, load_master_key
from terminal.drivers.pinpad import epp_protocol as proto
from terminal.drivers.pinpad.base import MacKey
from terminal.drivers.pinpad.epp import EppPinPad
from terminal.drivers.pinpad.sim import Pin, SimPinPad
from terminal.errors import DeviceFault

from .conftest import TEST_PIN_KEY
from .rigs_epp import build_epp

PAN = "4012345678909"
SECRET = "97531"
TMK = bytes.fromhex("C1D0F8FB4958670DBA40AB1F3752EF0D")
TAK = bytes.fromhex("2315208C9110AD402315208C9110AD40")
IK_ID = bytes.fromhex("1234567890123456")
IK = aes_initial_key(bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1"), IK_ID)
# Odd-parity components, as custodians receive them in sealed envelopes.
COMPONENTS = [
    "0123456789ABCDEFFEDCBA9876543210",
    "4C4C4C4C4C4C4C4C3E3E3E3E3E3E3E3E",
    "1F1F1F1F1F1F1F1F2A2A2A2A2A2A2A2A",
]


def _combined(components: list[str]) -> bytes:
    """The pad's rule: XOR the components, then force odd parity per byte."""
    key = bytes(16)
    for component in components:
        key = bytes(a ^ b for a, b in zip(key, bytes.fromhex(component), strict=True))
    return bytes(b ^ 1 if bin(b).count("1") % 2 == 0 else b for b in key)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _pad(clock: ManualClock, **keys: Any) -> tuple[EppPinPad, EppEmulator]:
    """An unopened driver on a fresh emulator (tests open it with ``with``)."""
    return build_epp(clock, **keys)


def test_tdes_report_shows_mode_and_check_values_never_keys(clock: ManualClock) -> None:
    pad, _ = _pad(clock, tmk=TMK, mac_key=TAK)
    with pad:
        report = device_report(pad)
    assert report["info"] == {"model": "ZT588-SIM", "serial": "SIM00000001", "firmware": "1.0.0"}
    assert (report["security"], report["ksn"], report["status"]) == ("tdes", None, "ok")
    assert report["pin_key_slot"] == 1
    assert report["key_check_values"] == {
        "00": check_value(TMK),
        "01": check_value(TEST_PIN_KEY),
        "02": check_value(TAK),
    }
    text = json.dumps(report).upper()
    for key in (TMK, TAK, TEST_PIN_KEY):
        assert key.hex().upper() not in text


def test_dukpt_report_shows_the_current_ksn_without_using_a_counter(clock: ManualClock) -> None:
    pad, emulator = _pad(clock, security="aes-dukpt", ik=IK, ik_id=IK_ID)
    with pad:
        emulator.script(Pin(SECRET))
        entry = pad.read_pin(PAN)
        first, second = device_report(pad), device_report(pad)
        assert AesKsn.parse(pad.next_ksn() or "").counter == 2
    assert first == second
    assert (first["security"], first["key_check_values"]) == ("aes-dukpt", {})
    assert first["ksn"] == entry.ksn == AesKsn(IK_ID, 1).hex()
    assert IK.hex().upper() not in json.dumps(first).upper()


def test_silent_pad_is_reported_not_raised(clock: ManualClock) -> None:
    pad, emulator = _pad(clock, response_timeout=0.5, retries=1)
    with pad:
        emulator.mute(2)
        report = device_report(pad)
    assert report["status"] == "fault"
    assert "no answer to DI after 2 attempts" in report["error"]
    assert "info" not in report


def test_sim_pad_report_names_its_keys(clock: ManualClock) -> None:
    with SimPinPad(clock, tmk=TMK, mac_key=TAK) as pad:
        report = device_report(pad)
    assert report["status"] == "ok"
    assert set(report["key_check_values"]) == {"TMK", "TPK", "TAK"}
    assert report["key_check_values"]["TMK"] == check_value(TMK)


@pytest.mark.parametrize("count", [2, 3])
def test_ceremony_loads_the_tmk_the_pad_then_uses(clock: ManualClock, count: int) -> None:
    components = COMPONENTS[:count]
    tmk = _combined(components)
    pad, emulator = _pad(clock, pin_key=None)
    with pad:
        result = load_master_key(pad, components, expected_kcv=check_value(tmk).lower())
        assert result["tmk_kcv"] == check_value(tmk) and result["kcv_matches"] is True
        assert result["slot"] == 0
        parts = result["components"]
        assert [p["part"] for p in parts] == list(range(1, count + 1))
        assert [p["component_kcv"] for p in parts] == [
            check_value(bytes.fromhex(c)) for c in components
        ]
        assert parts[0]["slot_kcv"] == parts[0]["component_kcv"]
        assert parts[-1]["slot_kcv"] == result["tmk_kcv"]
        assert pad.key_check_values() == {0: check_value(tmk)}
        # The new TMK is the pad's: key exchange under it, MACs with it.
        tpk, tak = bytes.fromhex("0E3ABFC8F7A1B3C40E3ABFC8F7A1B3C4"), TAK
        kcvs = pad.install_working_keys(
            encrypt_block(tmk, tpk).hex(), encrypt_block(tmk, tak).hex()
        )
        assert kcvs == {"TPKKCV": check_value(tpk), "TAKKCV": check_value(tak)}
        assert pad.mac(b"key exchange", key=MacKey.MASTER) == retail_mac(tmk, b"key exchange")
        emulator.script(Pin(SECRET))
        assert recover_pin_format0(pad.read_pin(PAN).block, PAN, tpk) == SECRET


def test_wrong_expected_kcv_loads_nothing(clock: ManualClock) -> None:
    pad, _ = _pad(clock, pin_key=None)
    with pad:
        before = pad.key_check_values()
        with pytest.raises(KeyCheckMismatch) as info:
            load_master_key(pad, COMPONENTS[:2], expected_kcv="AD7614")
        assert pad.key_check_values() == before  # the slot keeps what it held
    assert "AD7614" in str(info.value) and "nothing was loaded" in str(info.value)
    assert check_value(_combined(COMPONENTS[:2])) in str(info.value)


def test_bad_components_are_refused_before_any_is_sent(clock: ManualClock) -> None:
    pad, emulator = _pad(clock, pin_key=None)
    with pad:
        for components in (
            COMPONENTS[:1],  # split knowledge needs two custodians
            [COMPONENTS[0], "secret-not-hex"],
            [COMPONENTS[0], COMPONENTS[1][:30]],
            [COMPONENTS[0], COMPONENTS[1] + "0123456789ABCDEF"],
        ):
            with pytest.raises(LocalProtocolError) as info:
                load_master_key(pad, components)
            assert "secret" not in str(info.value)
            assert COMPONENTS[0] not in str(info.value)
    assert emulator.commands_received == 0


def test_pad_refusals_surface(clock: ManualClock) -> None:
    pad, _ = _pad(clock, pin_key=None)
    with pad, pytest.raises(DeviceFault) as info:
        load_master_key(pad, [COMPONENTS[0], "00" * 16])  # even parity
    assert info.value.code == proto.KEY_PARITY
    dukpt, _ = _pad(clock, security="aes-dukpt", ik=IK, ik_id=IK_ID)
    with dukpt, pytest.raises(LocalProtocolError) as mode:
        load_master_key(dukpt, COMPONENTS[:2])
    assert isinstance(mode.value, DeviceFault) and mode.value.code == proto.WRONG_MODE


def test_no_component_or_key_in_any_log_record(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    pad, _ = _pad(clock, pin_key=None)
    with caplog.at_level(logging.DEBUG), pad:
        result = load_master_key(pad, COMPONENTS)
        device_report(pad)
    assert result["tmk_kcv"] in caplog.text  # the ceremony is logged, by KCV
    text = caplog.text.upper()
    for secret in [*COMPONENTS, _combined(COMPONENTS).hex().upper()]:
        assert secret not in text
