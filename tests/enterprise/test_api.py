"""Enterprise online banking over the real host process's HTTP API: every role sees
exactly its table entry, and every refusal is a clear 4xx that changes nothing and is
journaled."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from sim.bank.client import BankApiError
from tests.enterprise.conftest import (
    ADMINS,
    COMPANY,
    PASSWORDS,
    HostProcess,
    holders,
    seed_table,
)

pytestmark = pytest.mark.e2e
REFUSED = "login refused: company, user, password, role or department not right"


def login(host: HostProcess, user: str, role: str, department: str) -> dict[str, object]:
    with host.client() as client:
        return client.login(COMPANY, user, PASSWORDS[user], role, department)


def test_every_role_sees_exactly_its_table_entry(host: HostProcess) -> None:
    table, who = seed_table(), holders()
    assert {e["role"] for e in table} == {
        "asset_manager",
        "trustee",
        "settlor",
        "beneficiary",
        "outsourced_manager",
    }
    for entry in table:
        user = who[(entry["role"], entry["department"])]
        session = login(host, user, entry["role"], entry["department"])
        assert session["operations"] == sorted(entry["operations"]), entry
        accounts = session["accounts"]
        assert isinstance(accounts, list)
        assert [a["account"] for a in accounts] == sorted(entry["accounts"]), entry
        if "balance" in entry["operations"]:
            assert all(isinstance(a["available"], int) for a in accounts)
        # and again on a later call, checked against the table, not remembered
        with host.client() as client:
            client.token = str(session["token"])
            assert client.session()["operations"] == sorted(entry["operations"])
    assert len(host.events(kind="login", outcome="ok")) == len(table)


@pytest.mark.parametrize(
    ("user", "password", "role", "department", "status"),
    [
        ("jan", "jan-pass-4", "trustee", "custody", 401),  # a role jan does not hold
        ("jan", "jan-pass-4", "beneficiary", "investment", 401),  # not in that department
        ("jan", "jan-pass-4", "beneficiary", "no-such-dept", 401),  # unknown department
        ("jan", "jans-wrong-pass", "beneficiary", "custody", 401),
        ("nobody", "nobodys-pass-9", "beneficiary", "custody", 401),
        ("jan", "jan-pass-4", "chairman", "custody", 422),  # unknown role
    ],
)
def test_a_claim_not_held_is_refused_without_learning_anything(
    host: HostProcess, user: str, password: str, role: str, department: str, status: int
) -> None:
    body = {"company": COMPANY, "user": user, "password": password}
    body |= {"role": role, "department": department}
    answer = httpx.post(f"{host.url}/enterprise/sessions", json=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"detail"}
    assert "2000000" not in answer.text  # no fund account named
    if status == 401:
        assert answer.json()["detail"] == REFUSED  # the same words whatever was wrong
    (event,) = host.events(kind="login", outcome="refused")
    assert event["subject"] == user
    assert password not in event["detail"]
    assert host.query("SELECT COUNT(*) FROM ent_sessions")[0][0] == 0
    assert password not in host.log.read_text()


def test_forged_and_expired_tokens_and_forbidden_operations_change_nothing(
    host: HostProcess,
) -> None:
    before = host.balances()
    jan = login(host, "jan", "beneficiary", "custody")
    with host.client() as client:
        client.token = "forged-" + "A" * 36
        with pytest.raises(BankApiError) as forged:
            client.balance("2000000004")
        assert forged.value.status == 401
        client.token = str(jan["token"])
        assert client.balance("2000000004")["available"] == 200_000
        calls: list[Callable[[], object]] = [
            lambda: client.transfer("2000000004", "2000000001", 100),
            lambda: client.payout("2000000004", "DE00EXTERNAL", 100),
            lambda: client.statement("2000000004"),
            lambda: client.balance("2000000001"),  # not the beneficiary's account
        ]
        for call in calls:
            with pytest.raises(BankApiError) as refused:
                call()
            assert refused.value.status == 403
        # the session's expiry passes (the host reads it from its database every call)
        writer = sqlite3.connect(host.db)
        writer.execute("UPDATE ent_sessions SET expires_at = 0")
        writer.commit()
        writer.close()
        with pytest.raises(BankApiError) as expired:
            client.balance("2000000004")
        assert expired.value.status == 401
        assert "expired" in expired.value.detail
    assert host.balances() == before
    refused_kinds = [e["kind"] for e in host.events(outcome="refused")]
    assert refused_kinds == ["balance", "transfer", "payout", "statement", "balance", "balance"]
    assert str(jan["token"]) not in host.log.read_text()


def test_transfer_payout_and_approval_by_another_user(host: HostProcess) -> None:
    gail = login(host, "gail", "asset_manager", "investment")
    henk = login(host, "henk", "trustee", "custody")
    with host.client() as client:
        client.token = str(gail["token"])
        moved = client.transfer("2000000001", "2000000002", 50_000)
        assert moved["amount"] == 50_000
        payout = client.payout("2000000001", "DE89370400440532013000", 70_000)
        assert payout["status"] == "pending"
        with pytest.raises(BankApiError) as own:
            client.approve(payout["id"])  # gail has no approve operation anyway
        assert own.value.status == 403
        assert host.balances()["2000000001"] == 5_000_000 - 50_000 - 70_000  # held
        client.token = str(henk["token"])
        paid = client.approve(payout["id"])
        assert (paid["status"], paid["approver"]) == ("paid", "henk")
        with pytest.raises(BankApiError) as again:
            client.approve(payout["id"])
        assert again.value.status == 409
    balances = host.balances()
    assert balances["2000000002"] == 3_000_000 + 50_000
    assert balances["GL-ENT-PAYOUTS"] == 70_000


def test_a_table_change_needs_a_second_admin_and_applies_at_the_next_request(
    host: HostProcess,
) -> None:
    jan = login(host, "jan", "beneficiary", "custody")
    with host.client() as user, host.client() as ana, host.client() as ben:
        user.token = str(jan["token"])
        ana.admin_login("admin-ana", ADMINS["admin-ana"])
        ben.admin_login("admin-ben", ADMINS["admin-ben"])
        with pytest.raises(BankApiError) as not_admin:
            user.table(COMPANY)  # a user's token is no administrator's
        assert not_admin.value.status == 401
        version = ana.table(COMPANY)["version"]
        change = ana.propose(
            COMPANY, "beneficiary", "custody", ["balance", "statement"], ["2000000004"]
        )
        assert change["status"] == "pending"
        assert user.session()["operations"] == ["balance"]  # pending changes nothing
        with pytest.raises(BankApiError) as own:
            ana.decide(change["id"], True)
        assert own.value.status == 403
        assert user.session()["operations"] == ["balance"]
        applied = ben.decide(change["id"], True)
        assert (applied["status"], applied["maker"], applied["checker"]) == (
            "applied",
            "admin-ana",
            "admin-ben",
        )
        # the same session, its next request: the new entry is in force
        assert user.session()["operations"] == ["balance", "statement"]
        assert user.statement("2000000004")["lines"]
        table = ben.table(COMPANY)
        assert table["version"] == version + 1
        (entry,) = [e for e in table["entries"] if e["role"] == "beneficiary"]
        assert entry["operations"] == ["balance", "statement"]
        with pytest.raises(BankApiError) as bad:
            ana.propose(COMPANY, "beneficiary", "custody", ["balance"], ["1000000001"])
        assert bad.value.status == 422  # not a fund account of the company
    kinds = [(e["kind"], e["outcome"]) for e in host.events(channel="admin")]
    assert ("change_approved", "refused") in kinds
    assert ("change_approved", "ok") in kinds


def test_the_cli_client(host: HostProcess) -> None:
    env = dict(os.environ, ATM_BANK_PASSWORD="ines-pass-3")
    base = [sys.executable, "-m", "sim", "bank", "enterprise", "--url", host.url]
    done = subprocess.run(
        [*base, "login", COMPANY, "ines", "settlor", "investment"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    session = json.loads(done.stdout)
    assert session["operations"] == ["balance", "statement"]
    env["ATM_BANK_TOKEN"] = session["token"]
    refused = subprocess.run(
        [*base, "transfer", "2000000001", "2000000002", "100"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("atm bank enterprise: 403: transfer on 2000000001")
    assert "Traceback" not in refused.stderr
