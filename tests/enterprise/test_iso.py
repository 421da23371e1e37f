"""Corporate cards at an ATM, against the real host process over the MACed ISO link:
the host offers the role/department pairs held, each claim opens exactly its table
entry, and a request outside it is declined 57 with the ledger unchanged."""

from __future__ import annotations

import asyncio

import pytest

from host_link.amounts import AmountType, decode_amounts
from host_link.client import StanSequence
from host_link.codec import Message
from host_link.codes import Mti, ProcessingCode
from host_link.enterprise import Claim, parse_offer
from sim.scenarios.link import TerminalLink
from tests.enterprise.conftest import ADMINS, HostProcess, seed_table
from tests.host.helpers import DEMO_SEED

pytestmark = pytest.mark.e2e

GAIL = ("4761739001010077", "3112", "1470")
JAN = ("4761739001010085", "3112", "2581")


Ask = tuple[tuple[str, str, str], Claim | None, str, int]  # card, claim, account, amount
# one STAN sequence for every link of the module: two sign-ons in the same second with the
# same STAN would be a replay (94), as a real terminal's persisted STAN also prevents
_STANS = StanSequence()


def ask_all(host: HostProcess, asks: list[Ask]) -> list[Message]:
    """One ATM signs on once and sends one 0100 (no amount) or 0200 per ask."""

    async def run() -> list[Message]:
        link = TerminalLink(DEMO_SEED, "ATM00001", host.iso_port, stan=_STANS)
        try:
            await link.sign_on()
            answers = []
            for (pan, expiry, pin), claim, account, amount in asks:
                fields: Message = {"2": pan, "14": expiry, "22": "051"}
                fields |= {"32": "00000000001", "49": "840"} | link.pin_fields(pin, pan)
                if claim is not None:
                    fields["124"] = claim.field()
                if account:
                    fields["102"] = account
                message: Message = {"t": Mti.AUTH_REQUEST, "3": ProcessingCode.BALANCE_INQUIRY}
                if amount:
                    message = {"t": Mti.FINANCIAL_REQUEST, "3": ProcessingCode.WITHDRAWAL}
                    message["4"] = f"{amount:012d}"
                answers.append(await link.request(message | fields))
            return answers
        finally:
            await link.close()

    return asyncio.run(run())


def ask(
    host: HostProcess,
    card: tuple[str, str, str],
    *,
    claim: Claim | None = None,
    account: str = "",
    amount: int = 0,
) -> Message:
    (answer,) = ask_all(host, [(card, claim, account, amount)])
    return answer


def test_the_pin_answer_offers_the_pairs_held_and_no_balance(host: HostProcess) -> None:
    answer = ask(host, GAIL)
    assert answer["39"] == "00"
    offer = parse_offer(answer["124"])
    assert [c.label for c in offer.roles] == ["asset_manager@custody", "asset_manager@investment"]
    amounts = decode_amounts(answer["54"])
    assert amounts[AmountType.AVAILABLE_BALANCE] == 0  # nothing shown before a role is chosen


def test_each_claim_opens_exactly_its_table_entry(host: HostProcess) -> None:
    entries = {(e["role"], e["department"]): e for e in seed_table()}
    claims = [
        (GAIL, "asset_manager", "investment"),
        (GAIL, "asset_manager", "custody"),
        (JAN, "beneficiary", "custody"),
    ]
    answers = ask_all(host, [(card, Claim(role, dept), "", 0) for card, role, dept in claims])
    for (_, role, department), answer in zip(claims, answers, strict=True):
        assert answer["39"] == "00"
        offer = parse_offer(answer["124"])
        entry = entries[(role, department)]
        assert list(offer.operations) == sorted(entry["operations"])
        assert list(offer.accounts) == sorted(entry["accounts"])


def test_a_balance_on_a_permitted_account(host: HostProcess) -> None:
    answer = ask(host, JAN, claim=Claim("beneficiary", "custody"), account="2000000004")
    assert answer["39"] == "00"
    assert decode_amounts(answer["54"])[AmountType.AVAILABLE_BALANCE] == 200_000


REFUSALS: list[tuple[Ask, str]] = [
    ((JAN, Claim("beneficiary", "custody"), "2000000004", 10_000), "57"),  # may only look
    ((GAIL, Claim("asset_manager", "investment"), "2000000003", 10_000), "57"),  # not its
    ((GAIL, Claim("trustee", "custody"), "2000000001", 10_000), "57"),  # a role not held
    ((GAIL, Claim("asset_manager", "custody"), "2000000003", 10_000), "57"),  # no withdraw
    ((GAIL, None, "2000000001", 10_000), "30"),  # no role claimed
    ((JAN, Claim("beneficiary", "custody"), "2000000001", 0), "57"),  # another's balance
]


def test_outside_the_table_is_declined_and_the_ledger_unchanged(host: HostProcess) -> None:
    before = host.balances()
    answers = ask_all(host, [request for request, _ in REFUSALS])
    assert [a["39"] for a in answers] == [code for _, code in REFUSALS]
    assert all("124" not in a for a in answers)  # nothing of the table is told
    assert host.balances() == before
    refused = host.events(channel="atm", outcome="refused")
    assert len(refused) == len(REFUSALS)
    assert {e["subject"] for e in refused} == {"gail", "jan"}


def test_a_permitted_withdrawal_posts_on_the_fund_account(host: HostProcess) -> None:
    answer = ask(
        host,
        GAIL,
        claim=Claim("asset_manager", "investment"),
        account="2000000002",
        amount=20_000,
    )
    assert answer["39"] == "00"
    assert host.balances()["2000000002"] == 3_000_000 - 20_000
    assert decode_amounts(answer["54"])[AmountType.AVAILABLE_BALANCE] == 3_000_000 - 20_000
    assert host.balances()["2000000001"] == 5_000_000  # the card's own account untouched


def test_a_table_change_applies_at_the_next_iso_request(host: HostProcess) -> None:
    jan_withdraws: Ask = (JAN, Claim("beneficiary", "custody"), "2000000004", 10_000)
    (before,) = ask_all(host, [jan_withdraws])
    assert before["39"] == "57"
    with host.client() as ana, host.client() as ben:
        ana.admin_login("admin-ana", ADMINS["admin-ana"])
        ben.admin_login("admin-ben", ADMINS["admin-ben"])
        change = ana.propose(
            "ACME-TRUST", "beneficiary", "custody", ["balance", "withdraw"], ["2000000004"]
        )
        ben.decide(change["id"], True)
    (after,) = ask_all(host, [jan_withdraws])
    assert after["39"] == "00"
    assert parse_offer(after["124"]).operations == ("balance", "withdraw")
    assert host.balances()["2000000004"] == 200_000 - 10_000
