"""Every message is MACed; any single flipped bit makes the receiver reject it."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from atm_common.crypto import dukpt
from host_link.authentication import encode_signed
from host_link.codes import is_key_exchange
from host_link.connection import Connection, MacFailure, MessageReceived
from host_link.errors import FramingError
from host_link.framing import frame
from sim.devices.key_injection import pinpad_options
from sim.host.keys import TDES, KeyStore, TerminalKeys
from sim.scenarios.demo import DEMO_SEED
from terminal.security.pinpad_keys import AES_DUKPT, MacKey, PinPadKeys

TMK = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
IK_ID = bytes.fromhex("1234567890123456")
BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")


class PadAuthenticator:
    def __init__(self, keys: PinPadKeys) -> None:
        self.keys = keys

    def sign(self, message: dict[str, str], data: bytes) -> bytes:
        key = MacKey.MASTER if is_key_exchange(message) else MacKey.WORKING
        return self.keys.mac(data, key, message.get("53"))


def _pair(tmp_path: Path, mode: str) -> tuple[KeyStore, PinPadKeys, str]:
    conn = sqlite3.connect(tmp_path / "keys.db", isolation_level=None)
    terminals = {
        "ATM00001": TerminalKeys("ATM00001", TDES, tmk=TMK),
        "ATM00002": TerminalKeys("ATM00002", AES_DUKPT, initial_key_id=IK_ID),
    }
    store = KeyStore(conn, lmk=bytes(range(16)), bdk_aes=BDK, terminals=terminals)
    if mode == TDES:
        pad = PinPadKeys(TDES, tmk=TMK)
        issued = store.issue_working_keys("ATM00001", dt.datetime.now(dt.UTC).isoformat())
        assert pad.install_working_keys(issued["TPK"], issued["TAK"]) == {
            "TPKKCV": issued["TPKKCV"],
            "TAKKCV": issued["TAKKCV"],
        }
        return store, pad, "ATM00001"
    pad = PinPadKeys(AES_DUKPT, ik=dukpt.aes_initial_key(BDK, IK_ID), ik_id=IK_ID)
    return store, pad, "ATM00002"


def _withdrawal(tid: str, pad: PinPadKeys) -> dict[str, str]:
    block, _, ksn = pad.pin_block("1234", "4761739001010010")
    message = {
        "t": "0200",
        "2": "4761739001010010",
        "3": "010000",
        "4": "000000010000",
        "7": "1122083000",
        "11": "000042",
        "14": "3012",
        "41": tid,
        "49": "840",
        "90": "0" * 42,  # forces the secondary bitmap: the MAC goes in field 128
    }
    message["52" if len(block) == 8 else "110"] = block.hex().upper()
    if ksn:
        message["53"] = ksn
    return message


def _accepted(receiver: Connection, data: bytes) -> bool:
    try:
        events = receiver.receive_data(data)
    except FramingError:
        return False
    return any(isinstance(e, MessageReceived) for e in events)


@pytest.mark.parametrize("mode", [TDES, AES_DUKPT])
def test_every_single_bit_flip_is_rejected_both_ways(tmp_path: Path, mode: str) -> None:
    store, pad, tid = _pair(tmp_path, mode)
    terminal_auth = PadAuthenticator(pad)
    request = frame(encode_signed(_withdrawal(tid, pad), terminal_auth))
    response_fields = {"t": "0210", "11": "000042", "7": "1122083000", "39": "00", "41": tid}
    if mode == AES_DUKPT:
        response_fields["53"] = pad.next_ksn() or ""
    response = frame(encode_signed(response_fields, store))
    for wire, receiver_auth in ((request, store), (response, terminal_auth)):
        assert _accepted(Connection(authenticator=receiver_auth), wire)  # intact: accepted
        for bit in range(len(wire) * 8):
            flipped = bytearray(wire)
            flipped[bit // 8] ^= 1 << (bit % 8)
            assert not _accepted(Connection(authenticator=receiver_auth), bytes(flipped)), bit


def test_missing_mac_is_a_mac_failure(tmp_path: Path) -> None:
    store, _, tid = _pair(tmp_path, TDES)
    plain = Connection().send(
        {"t": "0800", "7": "1122083000", "11": "000001", "41": tid, "70": "301"}
    )
    (event,) = Connection(authenticator=store).receive_data(plain)
    assert isinstance(event, MacFailure) and "missing" in event.reason


def test_mac_of_an_unknown_terminal_fails_cleanly(tmp_path: Path) -> None:
    store, pad, _ = _pair(tmp_path, TDES)
    forged = frame(
        encode_signed(
            {"t": "0800", "11": "000001", "41": "EVIL0001", "70": "301"}, PadAuthenticator(pad)
        )
    )
    (event,) = Connection(authenticator=store).receive_data(forged)
    assert isinstance(event, MacFailure) and "unknown terminal" in event.reason


def test_dukpt_ksn_of_another_pad_is_refused(tmp_path: Path) -> None:
    store, _, tid = _pair(tmp_path, AES_DUKPT)
    other = PinPadKeys(AES_DUKPT, ik=dukpt.aes_initial_key(BDK, bytes(8)), ik_id=bytes(8))
    message = _withdrawal(tid, other)
    (event,) = Connection(authenticator=store).receive_data(
        frame(encode_signed(message, PadAuthenticator(other)))
    )
    assert isinstance(event, MacFailure) and "another initial key" in event.reason


def test_pinpad_options_from_the_seed_match_the_host() -> None:
    assert pinpad_options(DEMO_SEED, "ATM00001")["security"] == "tdes"
    options = pinpad_options(DEMO_SEED, "ATM00002")
    assert options["ik"] == dukpt.aes_initial_key(BDK, IK_ID).hex().upper()
