"""What an attacker can learn or keep alive from the host's answers.

* Response codes: an unknown PAN and a known PAN with a wrong expiry get the same decline
  at the same point; a live card's state (expired) is told only to the right PIN.
* ANSI X9.24-3 transaction counter limit: at most 16 one-bits, no wrap past 2^32 - 1; a PIN
  pad at its end of life refuses to work, the host refuses a KSN beyond the limit.
* 0800 freshness: a stale or replayed sign-on (or key exchange) is refused and changes
  nothing, so it cannot keep a dead ATM on the customers' routing list.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atm_common.clock import ManualClock, SystemClock
from atm_common.crypto import dukpt
from atm_common.crypto.tdes import decrypt_block
from atm_common.errors import KeyUnavailable, LocalProtocolError
from host_link.client import transmission_time
from host_link.codec import Message, decode
from host_link.codes import NetworkCode
from host_link.connection import Connection, MacFailure
from host_link.framing import FrameDecoder
from sim.host import db
from sim.host.routing import RouteModel, rank_atms
from sim.scenarios.demo import DEMO_SEED
from terminal.security.pinpad_keys import AES_DUKPT, PinPadKeys
from tests.host.helpers import (
    ALICE,
    BOB,
    DAVE_EXPIRED,
    DUKPT_TERMINAL,
    TDES_TERMINAL,
    Host,
    LinkTerminal,
    Terminal,
    open_host,
    parse_key_exchange,
)

ATM = [sys.executable, "-m", "atm"]
UNKNOWN_PAN = "4761739001019999"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def host(tmp_path: Path, clock: ManualClock) -> Iterator[Host]:
    h = open_host(tmp_path / "host.db", clock)
    yield h
    h.conn.close()


@pytest.fixture
def terminal(host: Host, clock: ManualClock) -> Terminal:
    t = Terminal(clock)
    t.key_exchange(host)
    return t


def rc(host: Host, request: Message) -> str:
    response = host.authoriser.handle(request)
    assert response is not None
    return response["39"]


# -- response codes: no card oracle ---------------------------------------------------------


def unknown_card(terminal: Terminal) -> Message:
    """A well-formed request for a PAN the bank never issued (Alice's expiry and PIN)."""
    request = terminal.balance_inquiry(ALICE)
    return {**request, "2": UNKNOWN_PAN, "35": f"{UNKNOWN_PAN}={ALICE.expiry}1010000000000"}


@pytest.mark.parametrize("status", ["active", "retained", "blocked"])
def test_unknown_card_and_wrong_expiry_get_the_same_code(
    host: Host, terminal: Terminal, status: str
) -> None:
    host.conn.execute(
        "UPDATE cards SET status = ? WHERE pan_ref = ?", (status, host.keys.pan_ref(BOB.pan))
    )
    unknown = rc(host, unknown_card(terminal))
    wrong_expiry = rc(host, terminal.balance_inquiry(BOB, **{"14": "2901"}))
    assert unknown == wrong_expiry == "14"
    assert host.card_row(BOB.pan)["pin_tries"] == 0  # no PIN was looked at
    assert host.card_row(BOB.pan)["status"] == status


def test_an_expired_card_is_revealed_only_to_the_right_pin(host: Host, terminal: Terminal) -> None:
    assert rc(host, terminal.balance_inquiry(DAVE_EXPIRED, pin="0000")) == "55"
    assert host.card_row(DAVE_EXPIRED.pan)["pin_tries"] == 1  # a guess costs a try
    assert rc(host, terminal.withdrawal(DAVE_EXPIRED, 1_000, pin="0000")) == "55"
    assert rc(host, terminal.balance_inquiry(DAVE_EXPIRED)) == "54"
    assert host.card_row(DAVE_EXPIRED.pan)["pin_tries"] == 0


def test_a_retained_card_gives_no_pin_oracle(host: Host, terminal: Terminal) -> None:
    """A dead card answers its status whatever the PIN: checking PINs on a card that can
    no longer lock would let anyone guess for ever."""
    host.conn.execute(
        "UPDATE cards SET status = 'retained' WHERE pan_ref = ?", (host.keys.pan_ref(BOB.pan),)
    )
    assert rc(host, terminal.balance_inquiry(BOB, pin="0000")) == "75"
    assert rc(host, terminal.balance_inquiry(BOB)) == "75"


# -- ANSI X9.24-3 transaction counter ---------------------------------------------------------


def next_allowed_by_search(counter: int) -> int | None:
    """The standard's rule, stated directly: the next counter above ``counter`` with at
    most 16 one-bits, within 32 bits."""
    n = counter + 1
    while n <= 0xFFFFFFFF:
        if n.bit_count() <= 16:
            return n
        n += 1
    return None


def test_counter_rules_of_x9_24_3() -> None:
    assert dukpt.aes_counter_allowed(0x0000FFFF)  # 16 ones
    assert dukpt.aes_counter_allowed(0xFFFF0000)  # 16 ones: the last counter
    assert not dukpt.aes_counter_allowed(0x0001FFFF)  # 17 ones
    assert not dukpt.aes_counter_allowed(0xFFFFFFFF)
    assert not dukpt.aes_counter_allowed(1 << 32)  # does not fit the KSN
    assert dukpt.aes_next_counter(0) == 1
    assert dukpt.aes_next_counter(0x0001FFFE) == 0x00020000  # 0x0001FFFF skipped
    assert dukpt.aes_next_counter(0x7FFF8000) == 0x80000000  # a run of 32767 skipped
    assert dukpt.aes_next_counter(0xFFFE8000) == 0xFFFF0000
    assert dukpt.aes_next_counter(0xFFFF0000) is None  # end of life, never a wrap to 0


def test_next_counter_matches_the_rule_near_carries() -> None:
    rng = random.Random(2017)
    counters = [rng.getrandbits(32) for _ in range(300)]
    counters += [0xFFFF << shift for shift in range(17)]  # 16 ones, then a carry
    counters += [(0xFFFF << shift) - 1 for shift in range(1, 17)]
    for counter in counters:
        if dukpt.aes_counter_allowed(counter):
            assert dukpt.aes_next_counter(counter) == next_allowed_by_search(counter), hex(counter)


def test_no_key_is_derived_for_a_counter_beyond_the_limit() -> None:
    ik = dukpt.aes_initial_key(bytes(16), bytes(8))
    with pytest.raises(ValueError, match="16 one-bits"):
        dukpt.aes_working_key(ik, dukpt.AesKsn(bytes(8), 0x0001FFFF), dukpt.KeyUsage.MAC_BOTH)


def _pad(counter: int) -> PinPadKeys:
    ik_id = bytes.fromhex("1234567890123456")
    ik = dukpt.aes_initial_key(bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1"), ik_id)
    return PinPadKeys(AES_DUKPT, ik=ik, ik_id=ik_id, counter=counter)


def test_pin_pad_skips_counters_and_stops_at_end_of_life() -> None:
    pad = _pad(0xFFFE8000)
    assert pad.next_ksn() == "1234567890123456FFFF0000"
    with pytest.raises(KeyUnavailable, match="exhausted"):
        pad.next_ksn()
    with pytest.raises(KeyUnavailable, match="exhausted"):
        pad.pin_block("1234", ALICE.pan)  # no PIN is taken any more
    with pytest.raises(KeyUnavailable, match="exhausted"):
        pad.next_ksn()  # and it stays so: the counter never wraps to reuse keys
    assert pad.counter == 0xFFFF0000

    skipping = _pad(0x0001FFFE)
    assert skipping.next_ksn() == "123456789012345600020000"


def test_pin_pad_refuses_a_counter_outside_the_standard() -> None:
    with pytest.raises(LocalProtocolError, match=r"X9\.24-3"):
        _pad(0x0001FFFF)
    with pytest.raises(LocalProtocolError, match=r"X9\.24-3"):
        _pad(1 << 32)


def test_host_refuses_a_ksn_beyond_the_counter_limit(host: Host) -> None:
    bad_ksn = dukpt.AesKsn(bytes.fromhex("1234567890123456"), 0x0001FFFF).hex()
    message = {"t": "0800", "7": "0101120000", "11": "000001", "41": DUKPT_TERMINAL}
    message |= {"53": bad_ksn, "70": "001"}
    with pytest.raises(KeyUnavailable, match=r"X9\.24-3"):
        host.authoriser.key_store.mac(message, b"anything")
    wire = Connection().send({**message, "128": "0" * 16})
    (event,) = Connection(authenticator=host.authoriser.key_store).receive_data(wire)
    assert isinstance(event, MacFailure) and "X9.24-3" in event.reason
    # the last allowed counter still works
    good = {**message, "53": dukpt.AesKsn(bytes.fromhex("1234567890123456"), 0xFFFF0000).hex()}
    assert len(host.authoriser.key_store.mac(good, b"anything")) == 8


# -- 0800 freshness: stale and replayed network messages ----------------------------------------


def status(host: Host, terminal_id: str = TDES_TERMINAL) -> tuple[str, str]:
    row = host.conn.execute(
        "SELECT status, last_seen FROM terminals WHERE id = ?", (terminal_id,)
    ).fetchone()
    return row[0], row[1]


def network(terminal: Terminal, code: str) -> Message:
    return terminal.client.stamp({"t": "0800", "70": code})


def test_a_replayed_sign_on_is_refused_and_keeps_a_signed_off_atm_off(
    host: Host, clock: ManualClock, terminal: Terminal
) -> None:
    sign_on = network(terminal, NetworkCode.SIGN_ON)
    assert rc(host, sign_on) == "00"
    clock.advance(30)
    assert rc(host, network(terminal, NetworkCode.SIGN_OFF)) == "00"
    before = status(host)
    assert before[0] == "signed_off"
    clock.advance(30)
    assert rc(host, sign_on) == "94"  # the recorded message again, MAC and all
    assert status(host) == before
    assert rc(host, network(terminal, NetworkCode.ECHO)) == "00"  # a new one is fine


def test_a_stale_sign_on_does_not_refresh_liveness(
    host: Host, clock: ManualClock, terminal: Terminal
) -> None:
    recorded = network(terminal, NetworkCode.SIGN_ON)  # captured, delivered much later
    clock.advance(30 * 60)
    before = status(host)
    assert rc(host, recorded) == "63"
    assert status(host) == before
    model = RouteModel(stale_minutes=10)
    ranked = rank_atms(host.conn, clock.now(), 52.52, 13.405, 1_000, model)
    assert {"terminal_id": TDES_TERMINAL, "reason": "not heard from recently"} in ranked["excluded"]
    # a terminal whose clock is just a little off still signs on
    clock.advance(1)
    late = network(terminal, NetworkCode.SIGN_ON)
    clock.advance(4 * 60)
    assert rc(host, late) == "00"
    assert status(host) == ("in_service", clock.now().isoformat())


def test_a_sign_on_from_the_future_is_stale_too(
    host: Host, clock: ManualClock, terminal: Terminal
) -> None:
    ahead = ManualClock(clock.now() + dt.timedelta(days=40))
    before = status(host)
    assert rc(host, {**network(terminal, NetworkCode.SIGN_ON), "7": transmission_time(ahead)}) == (
        "63"
    )
    assert status(host) == before
    assert rc(host, {**network(terminal, NetworkCode.ECHO), "7": "1399999999"}) == "30"


def test_a_replayed_key_exchange_issues_no_new_keys(
    host: Host, clock: ManualClock, terminal: Terminal
) -> None:
    stored = host.conn.execute("SELECT * FROM terminal_keys").fetchall()
    exchange = network(terminal, NetworkCode.KEY_EXCHANGE)
    answer = host.authoriser.handle(exchange)
    assert answer is not None and answer["39"] == "00"
    keys = parse_key_exchange(answer)  # the terminal installs them, as a real one would
    terminal.pad.install_working_keys(keys["TPK"], keys["TAK"])
    terminal.tpk = decrypt_block(terminal.tmk, bytes.fromhex(keys["TPK"]))
    issued = [tuple(r) for r in host.conn.execute("SELECT * FROM terminal_keys")]
    assert issued != [tuple(r) for r in stored]
    clock.advance(10)
    assert rc(host, exchange) == "94"
    clock.advance(10 * 60)
    assert rc(host, exchange) == "63"
    assert [tuple(r) for r in host.conn.execute("SELECT * FROM terminal_keys")] == issued
    assert rc(host, terminal.balance_inquiry(ALICE)) == "00"  # its keys still work


def test_the_window_and_the_replay_memory_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    first = open_host(tmp_path / "host.db", clock)
    terminal = Terminal(clock)
    terminal.key_exchange(first)
    sign_on = network(terminal, NetworkCode.SIGN_ON)
    assert rc(first, sign_on) == "00"
    first.conn.close()
    again = open_host(tmp_path / "host.db", clock)
    try:
        assert rc(again, sign_on) == "94"
    finally:
        again.conn.close()


# -- against a real host process -----------------------------------------------------------------


@pytest.mark.e2e
def test_real_host_refuses_replayed_and_stale_sign_ons(tmp_path: Path) -> None:
    """``atm host --demo`` on the real clock; a terminal with the real MACing link."""
    proc = subprocess.Popen(
        [*ATM, "host", "--demo", "--plain", "--db", str(tmp_path / "host.db"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), proc.stderr.read() if proc.stderr else ""
        port = int(line.rsplit(":", 1)[1])
        codes, statuses = asyncio.run(_replay_over_tcp(port, tmp_path / "host.db"))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert codes == {"sign-on": "00", "sign-off": "00", "replay": "94", "stale": "63"}
    assert statuses == ["in_service", "signed_off", "signed_off", "signed_off"]


async def _replay_over_tcp(port: int, db_path: Path) -> tuple[dict[str, str], list[str]]:
    terminal = LinkTerminal(port, SystemClock(), TDES_TERMINAL, DEMO_SEED)
    codes: dict[str, str] = {}
    statuses: list[str] = []

    def now_status() -> str:
        conn = db.connect_readonly(db_path)
        try:
            row = conn.execute("SELECT status FROM terminals WHERE id = ?", (TDES_TERMINAL,))
            return str(row.fetchone()[0])
        finally:
            conn.close()

    try:
        await terminal.sign_on()  # key exchange + sign-on, both fresh
        sign_on = terminal.link.prepare({"t": "0800", "70": NetworkCode.SIGN_ON})
        recorded = terminal.signed(sign_on)  # the bytes a wiretap keeps
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        decoder = FrameDecoder()

        async def send(data: bytes) -> str:
            writer.write(data)
            while True:
                received = await asyncio.wait_for(reader.read(65536), 10)
                assert received, "the host closed the connection"
                for raw in decoder.feed(received):
                    return decode(raw)["39"]

        codes["sign-on"] = await send(recorded)
        statuses.append(now_status())
        sign_off = terminal.link.prepare({"t": "0800", "70": NetworkCode.SIGN_OFF})
        codes["sign-off"] = (await terminal.request(sign_off))["39"]
        statuses.append(now_status())
        codes["replay"] = await send(recorded)  # the ATM is gone; a recording revives it?
        statuses.append(now_status())
        ten_minutes_ago = ManualClock(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
        stale = {"t": "0800", "70": NetworkCode.SIGN_ON, "7": transmission_time(ten_minutes_ago)}
        codes["stale"] = await send(terminal.signed(terminal.link.prepare(stale)))  # MAC good
        statuses.append(now_status())
        writer.close()
    finally:
        await terminal.close()
    return codes, statuses
