"""Authoriser.handle end to end on a real SQLite host seeded with the demo bank."""

from __future__ import annotations

import pytest

from atm_common.clock import ManualClock
from atm_common.crypto.tdes import decrypt_block, encrypt_block
from host_link.amounts import AmountType
from host_link.codec import decode, encode
from sim.host.authoriser import Authoriser
from tests.host.helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    DAVE_EXPIRED,
    Card,
    Host,
    Terminal,
    amounts,
    parse_key_exchange,
)

WRONG_PIN = "0000"


def cash(terminal_id: str = "ATM00001") -> str:
    return f"GL-CASH-{terminal_id}"


def rc(host: Host, request: dict[str, str]) -> str:
    """The response code the host answers ``request`` with."""
    response = host.authoriser.handle(request)
    assert response is not None
    return response["39"]


def withdrawals(host: Host) -> int:
    return host.count("transfers", "kind = 'withdrawal'")


def test_balance_inquiry_approved_with_amounts(host: Host, terminal: Terminal) -> None:
    request = terminal.balance_inquiry(ALICE)
    response = host.authoriser.handle(request)
    assert response is not None
    assert response["t"] == "0110"
    assert response["39"] == "00"
    for echoed in ("3", "7", "11", "41", "49"):
        assert response[echoed] == request[echoed]
    assert not {"2", "14", "35", "52"} & response.keys(), "no card data on the way back"
    assert len(response["37"]) == 12 and len(response["38"]) == 6
    assert amounts(response) == {
        AmountType.LEDGER_BALANCE: 250_000,
        AmountType.AVAILABLE_BALANCE: 250_000,
        AmountType.WITHDRAWAL_LIMIT: 100_000,  # daily limit below the balance
    }
    assert withdrawals(host) == 0
    # The response survives the wire.
    assert decode(encode(response)) == response


def test_withdrawal_limit_is_available_funds_when_lower(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.balance_inquiry(BOB))
    assert response is not None and response["39"] == "00"
    assert amounts(response)[AmountType.WITHDRAWAL_LIMIT] == 5_000


def test_withdrawal_posts_exactly_one_transfer(host: Host, terminal: Terminal) -> None:
    before_cash = host.balance(cash())
    response = host.authoriser.handle(terminal.withdrawal(ALICE, 20_000))
    assert response is not None
    assert response["t"] == "0210" and response["39"] == "00"
    assert response["4"] == "000000020000"
    assert host.balance(ALICE.account) == 230_000
    assert host.balance(cash()) == before_cash - 20_000
    assert withdrawals(host) == 1
    rows = host.conn.execute("SELECT * FROM transfers WHERE kind = 'withdrawal'").fetchall()
    assert rows[0]["debit_account"] == ALICE.account
    assert rows[0]["credit_account"] == cash()
    assert rows[0]["amount"] == 20_000
    assert rows[0]["terminal_id"] == "ATM00001"
    assert amounts(response) == {
        AmountType.LEDGER_BALANCE: 230_000,
        AmountType.AVAILABLE_BALANCE: 230_000,
        AmountType.WITHDRAWAL_LIMIT: 80_000,
    }
    assert host.ledger.check() == []


def test_insufficient_funds_51(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.withdrawal(BOB, 5_001))
    assert response is not None and response["39"] == "51"
    assert host.balance(BOB.account) == 5_000
    assert withdrawals(host) == 0


def test_exact_balance_is_allowed(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.withdrawal(BOB, 5_000))
    assert response is not None and response["39"] == "00"
    assert host.balance(BOB.account) == 0


def test_daily_limit_61(host: Host, terminal: Terminal) -> None:
    assert DAVE.daily_limit == 30_000
    response = host.authoriser.handle(terminal.withdrawal(DAVE, 30_001))
    assert response is not None and response["39"] == "61"
    assert withdrawals(host) == 0


def test_daily_limit_counts_earlier_withdrawals(host: Host, terminal: Terminal) -> None:
    first = host.authoriser.handle(terminal.withdrawal(DAVE, 20_000))
    assert first is not None and first["39"] == "00"
    assert amounts(first)[AmountType.WITHDRAWAL_LIMIT] == 10_000
    second = host.authoriser.handle(terminal.withdrawal(DAVE, 10_001))
    assert second is not None and second["39"] == "61"
    third = host.authoriser.handle(terminal.withdrawal(DAVE, 10_000))
    assert third is not None and third["39"] == "00"
    assert host.balance(DAVE.account) == 900_000 - 30_000


def test_daily_limit_resets_next_day(host: Host, terminal: Terminal, clock: ManualClock) -> None:
    assert rc(host, terminal.withdrawal(DAVE, 30_000)) == "00"
    assert rc(host, terminal.withdrawal(DAVE, 1)) == "61"
    clock.advance(24 * 3600)
    assert rc(host, terminal.withdrawal(DAVE, 1)) == "00"


def test_wrong_pin_55(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.balance_inquiry(ALICE, WRONG_PIN))
    assert response is not None and response["39"] == "55"
    assert "54" not in response
    assert host.card_row(ALICE.pan)["pin_tries"] == 1


def test_third_wrong_pin_retains_card_75(host: Host, terminal: Terminal) -> None:
    codes = [rc(host, terminal.balance_inquiry(ALICE, WRONG_PIN)) for _ in range(3)]
    assert codes == ["55", "55", "75"]
    row = host.card_row(ALICE.pan)
    assert row["status"] == "retained"
    # Even the right PIN is refused now, and the refusal does not post.
    again = host.authoriser.handle(terminal.withdrawal(ALICE, 1_000))
    assert again is not None and again["39"] == "75"
    assert rc(host, terminal.balance_inquiry(ALICE)) == "75"
    assert withdrawals(host) == 0
    assert host.balance(ALICE.account) == 250_000


def test_wrong_pin_on_withdrawal_counts_too(host: Host, terminal: Terminal) -> None:
    codes = [rc(host, terminal.withdrawal(CAROL, 1_000, WRONG_PIN)) for _ in range(3)]
    assert codes == ["55", "55", "75"]
    assert withdrawals(host) == 0


def test_good_pin_resets_the_try_counter(host: Host, terminal: Terminal) -> None:
    assert rc(host, terminal.balance_inquiry(ALICE, WRONG_PIN)) == "55"
    assert rc(host, terminal.balance_inquiry(ALICE, WRONG_PIN)) == "55"
    assert rc(host, terminal.balance_inquiry(ALICE)) == "00"
    assert host.card_row(ALICE.pan)["pin_tries"] == 0
    assert rc(host, terminal.balance_inquiry(ALICE, WRONG_PIN)) == "55"
    assert rc(host, terminal.balance_inquiry(ALICE, WRONG_PIN)) == "55"
    assert host.card_row(ALICE.pan)["status"] == "active"


def test_pin_block_under_the_wrong_key_is_a_wrong_pin(host: Host, terminal: Terminal) -> None:
    terminal.tpk = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    response = host.authoriser.handle(terminal.balance_inquiry(ALICE))
    assert response is not None and response["39"] == "55"


def test_pin_block_under_the_tmk_is_a_wrong_pin(host: Host, terminal: Terminal) -> None:
    terminal.tpk = terminal.tmk  # the master key never encrypts PINs
    assert rc(host, terminal.balance_inquiry(ALICE)) == "55"


def test_pin_before_key_exchange_is_refused_63(host: Host, clock: ManualClock) -> None:
    fresh = Terminal(clock)
    fresh.tpk = bytes(16)  # whatever the pad would hold: the host has no working keys yet
    response = host.authoriser.handle(fresh.withdrawal(ALICE, 1_000))
    assert response is not None and response["39"] == "63"
    assert withdrawals(host) == 0
    assert host.card_row(ALICE.pan)["pin_tries"] == 0  # not the customer's fault


def test_garbage_pin_block_is_a_wrong_pin_not_an_error(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.balance_inquiry(ALICE, **{"52": "ZZZZZZZZZZZZZZZZ"}))
    assert response is not None and response["39"] == "55"


def test_pin_tries_are_per_card(host: Host, terminal: Terminal) -> None:
    for _ in range(3):
        host.authoriser.handle(terminal.balance_inquiry(ALICE, WRONG_PIN))
    assert rc(host, terminal.balance_inquiry(CAROL)) == "00"


def test_unknown_card_14(host: Host, terminal: Terminal) -> None:
    stranger = Card("4000001234567899", "1234", "3012", "none", 0)
    response = host.authoriser.handle(terminal.balance_inquiry(stranger))
    assert response is not None and response["39"] == "14"


def test_expiry_mismatch_14(host: Host, terminal: Terminal) -> None:
    msg = terminal.balance_inquiry(ALICE, **{"14": "3011"})
    response = host.authoriser.handle(msg)
    assert response is not None and response["39"] == "14"


def test_expired_card_54(host: Host, terminal: Terminal) -> None:
    assert DAVE_EXPIRED.expiry == "2401"
    response = host.authoriser.handle(terminal.withdrawal(DAVE_EXPIRED, 1_000))
    assert response is not None and response["39"] == "54"
    assert withdrawals(host) == 0


def test_card_valid_through_its_expiry_month(
    host: Host, terminal: Terminal, clock: ManualClock
) -> None:
    # ManualClock starts 2026-01-01; a card expiring 2601 is still good this month.
    host.conn.execute(
        "UPDATE cards SET expiry = '2601' WHERE pan_ref = ?", (host.keys.pan_ref(ALICE.pan),)
    )
    response = host.authoriser.handle(terminal.balance_inquiry(ALICE, **{"14": "2601"}))
    assert response is not None and response["39"] == "00"
    clock.advance(31 * 24 * 3600)
    response = host.authoriser.handle(terminal.balance_inquiry(ALICE, **{"14": "2601"}))
    assert response is not None and response["39"] == "54"


def test_blocked_card_57(host: Host, terminal: Terminal) -> None:
    host.conn.execute(
        "UPDATE cards SET status = 'blocked' WHERE pan_ref = ?", (host.keys.pan_ref(ALICE.pan),)
    )
    response = host.authoriser.handle(terminal.balance_inquiry(ALICE))
    assert response is not None and response["39"] == "57"


def test_zero_amount_13(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.withdrawal(ALICE, 0))
    assert response is not None and response["39"] == "13"
    assert withdrawals(host) == 0


def test_currency_mismatch_13(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.withdrawal(ALICE, 1_000, **{"49": "978"}))
    assert response is not None and response["39"] == "13"


@pytest.mark.parametrize(
    ("kind", "code"),
    [("balance_inquiry", "010000"), ("withdrawal", "310000"), ("withdrawal", "000000")],
)
def test_wrong_processing_code_12(host: Host, terminal: Terminal, kind: str, code: str) -> None:
    if kind == "balance_inquiry":
        msg = terminal.balance_inquiry(ALICE, **{"3": code})
    else:
        msg = terminal.withdrawal(ALICE, 1_000, **{"3": code})
    response = host.authoriser.handle(msg)
    assert response is not None and response["39"] == "12"
    assert withdrawals(host) == 0


def test_unknown_request_mti_12(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.withdrawal(ALICE, 1_000, t="0300"))
    assert response is not None
    assert response["t"] == "0310" and response["39"] == "12"


@pytest.mark.parametrize("field", ["2", "14", "49", "52"])
def test_missing_card_field_30(host: Host, terminal: Terminal, field: str) -> None:
    msg = terminal.withdrawal(ALICE, 1_000)
    del msg[field]
    response = host.authoriser.handle(msg)
    assert response is not None and response["39"] == "30"
    assert withdrawals(host) == 0


@pytest.mark.parametrize("field", ["7", "11", "41"])
def test_missing_key_field_30(host: Host, terminal: Terminal, field: str) -> None:
    msg = terminal.balance_inquiry(ALICE)
    del msg[field]
    response = host.authoriser.handle(msg)
    assert response is not None and response["39"] == "30"
    assert host.count("requests") == 0


def test_missing_amount_30(host: Host, terminal: Terminal) -> None:
    msg = terminal.withdrawal(ALICE, 1_000)
    del msg["4"]
    response = host.authoriser.handle(msg)
    assert response is not None and response["39"] == "30"


def test_unknown_terminal_58(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.withdrawal(ALICE, 1_000, **{"41": "ATM99999"}))
    assert response is not None and response["39"] == "58"
    assert response["41"] == "ATM99999"
    assert withdrawals(host) == 0


def test_second_terminal_posts_to_its_own_cash_account(host: Host, clock: ManualClock) -> None:
    airport = Terminal(clock, terminal_id="ATM00002")  # AES DUKPT: no key exchange
    response = host.authoriser.handle(airport.withdrawal(ALICE, 4_000))
    assert response is not None and response["39"] == "00"
    assert host.balance(cash("ATM00002")) == 1_000_000 - 4_000
    assert host.balance(cash("ATM00001")) == 1_000_000


def test_duplicate_request_gets_identical_response_and_posts_once(
    host: Host, terminal: Terminal
) -> None:
    request = terminal.withdrawal(ALICE, 10_000)
    first = host.authoriser.handle(dict(request))
    second = host.authoriser.handle(dict(request))
    assert first is not None and first["39"] == "00"
    assert second == first
    assert withdrawals(host) == 1
    assert host.balance(ALICE.account) == 240_000
    assert host.count("requests") == 1


def test_duplicate_decline_does_not_count_another_pin_try(host: Host, terminal: Terminal) -> None:
    request = terminal.balance_inquiry(ALICE, WRONG_PIN)
    responses = [host.authoriser.handle(dict(request)) for _ in range(5)]
    assert all(r == responses[0] for r in responses)
    assert responses[0] is not None and responses[0]["39"] == "55"
    assert host.card_row(ALICE.pan)["pin_tries"] == 1


def test_same_key_different_content_is_94(host: Host, terminal: Terminal) -> None:
    request = terminal.withdrawal(ALICE, 10_000)
    assert rc(host, dict(request)) == "00"
    replay = dict(request) | {"4": "000000050000"}
    response = host.authoriser.handle(replay)
    assert response is not None and response["39"] == "94"
    assert withdrawals(host) == 1
    assert host.balance(ALICE.account) == 240_000


def test_same_stan_other_transmission_time_is_a_new_request(host: Host, terminal: Terminal) -> None:
    request = terminal.withdrawal(ALICE, 1_000)
    later = dict(request) | {"7": "0101120001"}
    assert rc(host, dict(request)) == "00"
    assert rc(host, later) == "00"
    assert withdrawals(host) == 2


def test_idempotency_survives_a_restart(host: Host, terminal: Terminal) -> None:
    request = terminal.withdrawal(ALICE, 10_000)
    first = host.authoriser.handle(dict(request))
    restarted = Authoriser(host.conn, host.keys, host.settings, host.clock)
    assert restarted.handle(dict(request)) == first
    assert withdrawals(host) == 1


def test_reversal_restores_the_balance(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    assert rc(host, original) == "00"
    reversal = terminal.reversal(original)
    assert reversal["t"] == "0400"
    response = host.authoriser.handle(reversal)
    assert response is not None
    assert response["t"] == "0410" and response["39"] == "00"
    assert response["90"] == reversal["90"]
    assert host.balance(ALICE.account) == 250_000
    assert host.balance(cash()) == 1_000_000
    assert host.count("transfers", "kind = 'reversal'") == 1
    assert host.ledger.check() == []
    # The reversed amount no longer counts against the daily limit.
    inquiry = host.authoriser.handle(terminal.balance_inquiry(ALICE))
    assert inquiry is not None
    assert amounts(inquiry)[AmountType.WITHDRAWAL_LIMIT] == 100_000


def test_second_reversal_does_nothing_more(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    host.authoriser.handle(original)
    reversal = terminal.reversal(original)
    first = host.authoriser.handle(dict(reversal))
    repeat = host.authoriser.handle(dict(reversal))  # same key: the stored answer
    assert repeat == first
    fresh = host.authoriser.handle(terminal.reversal(original))  # new STAN, same original
    assert fresh is not None and fresh["39"] == "00"
    assert host.count("transfers", "kind = 'reversal'") == 1
    assert host.balance(ALICE.account) == 250_000
    assert host.ledger.check() == []


def test_partial_reversal_refunds_the_undispensed_part(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    host.authoriser.handle(original)
    advice = terminal.reversal(original, dispensed=5_000)
    assert advice["t"] == "0420"
    assert advice["95"].startswith("000000005000")
    response = host.authoriser.handle(advice)
    assert response is not None
    assert response["t"] == "0430" and response["39"] == "00"
    assert host.balance(ALICE.account) == 250_000 - 5_000
    assert host.balance(cash()) == 1_000_000 - 5_000
    # A repeat advice (0421) of the same message is answered again and refunds nothing.
    repeat = host.authoriser.handle(dict(advice) | {"t": "0421"})
    assert repeat == response
    assert host.balance(ALICE.account) == 245_000
    assert host.ledger.check() == []


def test_reversal_with_everything_dispensed_refunds_nothing(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    host.authoriser.handle(original)
    response = host.authoriser.handle(terminal.reversal(original, dispensed=20_000))
    assert response is not None and response["39"] == "00"
    assert host.balance(ALICE.account) == 230_000
    assert host.count("transfers", "kind = 'reversal'") == 0


def test_reversal_dispensed_more_than_approved_13(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    host.authoriser.handle(original)
    response = host.authoriser.handle(terminal.reversal(original, dispensed=20_001))
    assert response is not None and response["39"] == "13"
    assert host.balance(ALICE.account) == 230_000


def test_reversal_of_unknown_original_is_acknowledged(host: Host, terminal: Terminal) -> None:
    never_sent = terminal.withdrawal(ALICE, 20_000)
    response = host.authoriser.handle(terminal.reversal(never_sent))
    assert response is not None
    assert response["t"] == "0410" and response["39"] == "00"
    assert host.count("transfers", "kind = 'reversal'") == 0
    assert host.balance(ALICE.account) == 250_000
    # the original arriving late (a reversal overtook it) is refused, never posted
    late = host.authoriser.handle(never_sent)
    assert late is not None and late["39"] == "12"
    assert host.balance(ALICE.account) == 250_000
    assert host.count("transfers", "kind = 'withdrawal'") == 0


def test_a_reversal_of_a_reversal_is_refused(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    assert rc(host, original) == "00"
    first = terminal.reversal(original)
    assert rc(host, first) == "00"
    assert host.balance(ALICE.account) == 250_000
    sneaky = terminal.reversal(first)  # field 90 points at the 0400, not at a 0200
    response = host.authoriser.handle(sneaky)
    assert response is not None and response["39"] == "12"
    assert host.balance(ALICE.account) == 250_000


def test_reversal_of_a_declined_withdrawal_refunds_nothing(host: Host, terminal: Terminal) -> None:
    declined = terminal.withdrawal(BOB, 9_000)
    assert rc(host, declined) == "51"
    response = host.authoriser.handle(terminal.reversal(declined))
    assert response is not None and response["39"] == "00"
    assert host.balance(BOB.account) == 5_000
    assert host.count("transfers", "kind = 'reversal'") == 0


def test_reversal_from_another_terminal_does_not_match(
    host: Host, terminal: Terminal, clock: ManualClock
) -> None:
    airport = Terminal(clock, terminal_id="ATM00002")
    original = terminal.withdrawal(ALICE, 20_000)
    host.authoriser.handle(original)
    response = host.authoriser.handle(airport.reversal(original))
    assert response is not None and response["39"] == "00"
    assert host.balance(ALICE.account) == 230_000


def test_malformed_field_90_is_30(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    host.authoriser.handle(original)
    response = host.authoriser.handle(terminal.reversal(original) | {"90": "X" * 42})
    assert response is not None and response["39"] == "30"
    assert host.balance(ALICE.account) == 230_000


def test_echo_0800(host: Host, terminal: Terminal) -> None:
    request = terminal.echo()
    response = host.authoriser.handle(request)
    assert response is not None
    assert response["t"] == "0810"
    assert response["39"] == "00"
    assert response["70"] == "301"
    assert response["11"] == request["11"] and response["41"] == request["41"]


def test_unknown_network_code_12(host: Host, terminal: Terminal) -> None:
    response = host.authoriser.handle(terminal.echo() | {"70": "999"})
    assert response is not None
    assert response["t"] == "0810" and response["39"] == "12"


def test_responses_are_not_answered(host: Host, terminal: Terminal) -> None:
    assert host.authoriser.handle(terminal.balance_inquiry(ALICE, t="0110")) is None


def test_every_response_encodes(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 1_000)
    for request in (
        terminal.balance_inquiry(ALICE),
        terminal.balance_inquiry(ALICE, WRONG_PIN),
        original,
        terminal.reversal(original),
        terminal.reversal(original, dispensed=500),
        terminal.echo(),
    ):
        response = host.authoriser.handle(request)
        assert response is not None
        assert decode(encode(response)) == response


def test_no_card_data_stored_with_requests(host: Host, terminal: Terminal) -> None:
    host.authoriser.handle(terminal.withdrawal(ALICE, 1_000))
    host.authoriser.handle(terminal.balance_inquiry(ALICE, WRONG_PIN))
    for row in host.conn.execute("SELECT * FROM requests"):
        for value in tuple(row):
            assert ALICE.pan not in str(value)
    for row in host.conn.execute("SELECT * FROM transfers"):
        assert ALICE.pan not in " ".join(str(v) for v in tuple(row))


def test_reversal_after_midnight_does_not_raise_todays_limit(
    host: Host, terminal: Terminal, clock: ManualClock
) -> None:
    original = terminal.withdrawal(DAVE, 30_000)  # 2026-01-01 12:00, the whole daily limit
    assert rc(host, original) == "00"
    clock.advance(13 * 3600)  # 01:00 next day: a stored reversal is forwarded now
    assert rc(host, terminal.reversal(original)) == "00"
    assert host.balance(DAVE.account) == 900_000
    inquiry = host.authoriser.handle(terminal.balance_inquiry(DAVE))
    assert inquiry is not None
    assert amounts(inquiry)[AmountType.WITHDRAWAL_LIMIT] <= DAVE.daily_limit
    assert rc(host, terminal.withdrawal(DAVE, 60_000)) == "61"


def test_non_ascii_digit_amount_is_answered_not_raised(host: Host, terminal: Terminal) -> None:
    assert rc(host, terminal.withdrawal(ALICE, 1_000, **{"4": "00000000010²"})) == "13"


def test_reversal_repeat_0401_gets_the_original_answer(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    host.authoriser.handle(original)
    reversal = terminal.reversal(original)
    first = host.authoriser.handle(dict(reversal))
    repeat = host.authoriser.handle(dict(reversal) | {"t": "0401"})
    assert first is not None and first["39"] == "00"
    assert repeat == first
    assert host.count("transfers", "kind = 'reversal'") == 1
    assert host.balance(ALICE.account) == 250_000


def test_repeat_of_a_never_seen_reversal_is_processed(host: Host, terminal: Terminal) -> None:
    original = terminal.withdrawal(ALICE, 20_000)
    host.authoriser.handle(original)
    response = host.authoriser.handle(terminal.reversal(original) | {"t": "0401"})
    assert response is not None
    assert (response["t"], response["39"]) == ("0410", "00")
    assert host.balance(ALICE.account) == 250_000


# -- keys: TDES key exchange and AES DUKPT --------------------------------------------------


def test_key_exchange_returns_keys_under_the_tmk_with_check_values(
    host: Host, clock: ManualClock
) -> None:
    term = Terminal(clock)
    response = term.key_exchange(host)
    assert (response["t"], response["39"], response["70"]) == ("0810", "00", "101")
    keys = parse_key_exchange(response)
    assert set(keys) == {"TPK", "TPKKCV", "TAK", "TAKKCV"}
    tpk = decrypt_block(term.tmk, bytes.fromhex(keys["TPK"]))
    tak = decrypt_block(term.tmk, bytes.fromhex(keys["TAK"]))
    assert keys["TPKKCV"] == encrypt_block(tpk, bytes(8))[:3].hex().upper()
    assert keys["TAKKCV"] == encrypt_block(tak, bytes(8))[:3].hex().upper()
    assert tpk != tak
    assert term.pad.check_values()["TPK"] == keys["TPKKCV"]
    # Stored only under the LMK: neither clear key is in the table.
    row = host.conn.execute("SELECT * FROM terminal_keys WHERE terminal_id = 'ATM00001'").fetchone()
    assert tpk.hex().upper() not in tuple(row) and tak.hex().upper() not in tuple(row)
    assert keys["TPK"] not in tuple(row)  # not under the TMK either


def test_new_key_exchange_retires_the_old_pin_key(host: Host, terminal: Terminal) -> None:
    old = terminal.tpk
    assert rc(host, terminal.balance_inquiry(ALICE)) == "00"
    terminal.key_exchange(host)
    assert terminal.tpk != old
    assert rc(host, terminal.balance_inquiry(ALICE)) == "00"
    terminal.tpk = old
    assert rc(host, terminal.balance_inquiry(ALICE)) == "55"


def test_key_exchange_for_a_dukpt_terminal_is_refused(host: Host, clock: ManualClock) -> None:
    airport = Terminal(clock, terminal_id="ATM00002")
    response = host.authoriser.handle(airport.client.stamp({"t": "0800", "70": "101"}))
    assert response is not None and response["39"] == "12"
    assert "63" not in response


def test_key_exchange_for_an_unknown_terminal_is_refused(host: Host, clock: ManualClock) -> None:
    term = Terminal(clock)
    response = host.authoriser.handle(
        term.client.stamp({"t": "0800", "70": "101", "41": "ATMXXXXX"})
    )
    assert response is not None and response["39"] == "12"


def test_dukpt_withdrawal_with_format4_block(host: Host, clock: ManualClock) -> None:
    airport = Terminal(clock, terminal_id="ATM00002")
    request = airport.withdrawal(CAROL, 3_000)
    assert "52" not in request and len(request["110"]) == 32 and request["53"]
    response = host.authoriser.handle(request)
    assert response is not None and response["39"] == "00"
    assert response["53"] == request["53"]  # the KSN is echoed for the response's MAC
    assert host.balance(CAROL.account) == 77_000


def test_dukpt_wrong_pin_and_tries(host: Host, clock: ManualClock) -> None:
    airport = Terminal(clock, terminal_id="ATM00002")
    codes = [rc(host, airport.balance_inquiry(CAROL, WRONG_PIN)) for _ in range(3)]
    assert codes == ["55", "55", "75"]


def test_dukpt_block_with_a_foreign_ksn_is_refused(host: Host, clock: ManualClock) -> None:
    airport = Terminal(clock, terminal_id="ATM00002")
    request = airport.balance_inquiry(CAROL)
    foreign = "FFFFFFFFFFFFFFFF" + request["53"][16:]
    response = host.authoriser.handle(request | {"53": foreign})
    assert response is not None and response["39"] == "63"
    assert host.card_row(CAROL.pan)["pin_tries"] == 0


def test_dukpt_block_under_another_counter_is_a_wrong_pin(host: Host, clock: ManualClock) -> None:
    airport = Terminal(clock, terminal_id="ATM00002")
    first = airport.balance_inquiry(CAROL)
    second = airport.balance_inquiry(CAROL)
    assert first["53"] != second["53"]
    swapped = second | {"110": first["110"]}
    assert rc(host, swapped) == "55"


def test_missing_pin_block_is_30(host: Host, clock: ManualClock) -> None:
    airport = Terminal(clock, terminal_id="ATM00002")
    request = airport.balance_inquiry(CAROL)
    del request["110"]
    assert rc(host, request) == "30"
