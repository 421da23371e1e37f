"""Enterprise banking in the demo: each role's view, at the API and at the ATM, a few
refused attempts, and a table change through maker-checker taking effect at once.

For every entry of the demo company's table, its holder logs in over the host's API
(the operations and fund accounts returned) and inserts their corporate card (the menu
and the account choice the ATM offers, read from the terminal's journal); both must
equal the table. Then corporate cards withdraw and look at balances (sessions the demo
reconciles like any other), attempts outside the table are refused, and a change of the
table made by one administrator and approved by another is in force at the next request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sim.bank.client import BankApiError, EnterpriseClient
from sim.host.seed import read_toml
from sim.scenarios.scripts import CONTINUE, Customer, Scenario, apply
from terminal.app import Terminal
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.pinpad.sim import CANCEL, Fkey, Keys, Pin

COMPANY = "ACME-TRUST"
# demo data, like the seed's PINs: the users' and administrators' passwords, the cards
PASSWORDS = {"gail": "gail-pass-1", "henk": "henk-pass-2", "ines": "ines-pass-3"}
PASSWORDS |= {"jan": "jan-pass-4", "kim": "kim-pass-5"}
ADMINS = {"admin-ana": "ana-checks-1", "admin-ben": "ben-checks-2"}
CARDS = {
    "gail": ("GAIL GRAU ACME TRUST", "1470"),
    "henk": ("HENK HOLM ACME TRUST", "3692"),
    "ines": ("INES ITO ACME TRUST", "4703"),
    "jan": ("JAN JANSSEN ACME TRUST", "2581"),
    "kim": ("KIM KAUR ACME TRUST", "5814"),
}
ATM_CHOICES = (("withdraw", "withdrawal"), ("balance", "balance"))  # what an ATM can do
F1, F2, F3 = Fkey("F1"), Fkey("F2"), Fkey("F3")

# Corporate card sessions the demo reconciles: the card's first account is the fund
# account the session uses (gail: role 2 of 2 is asset_manager@investment).
ENTERPRISE_ATM: tuple[Scenario, ...] = (
    Scenario(
        "corporate card: asset manager (investment) withdraws from the growth fund",
        "GAIL GRAU ACME TRUST",
        [Pin("1470"), F2, F1, F1, Keys("100")],
        "dispensed",
        10_000,
    ),
    Scenario(
        "corporate card: trustee (custody) withdraws from the custody reserve",
        "HENK HOLM ACME TRUST",
        [Pin("3692"), F1, F1, F3, Keys("50")],
        "dispensed",
        5_000,
    ),
    Scenario(
        "corporate card: a beneficiary may only see a balance",
        "JAN JANSSEN ACME TRUST",
        [Pin("2581"), F1, F1, F1, CONTINUE],
        "balance_shown",
    ),
)


def company_table(seed: Path) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The demo company's table entries, and the pairs each user holds (as the host
    offers them: sorted by role, then company:department)."""
    enterprise = read_toml(seed)["enterprise"]
    (company,) = [c for c in enterprise["companies"] if c["id"] == COMPANY]
    held = {
        u["person"]: sorted(u["roles"], key=lambda p: p.partition("@")[::2])
        for u in company["users"]
    }
    return list(company["table"]), held


def _holder(held: dict[str, list[str]], role: str, department: str) -> str:
    return next(user for user, pairs in held.items() if f"{role}@{department}" in pairs)


async def atm_view(
    terminal: Terminal, customer: Customer, card: CardData, pin: str, index: int
) -> dict[str, Any]:
    """A corporate session that picks pair ``index``, then the menu's first item, and
    cancels at the account choice: what the host granted and what the ATM offered."""
    scenario = Scenario("view", card.name, [Pin(pin), Fkey(f"F{index + 1}"), F1, CANCEL], "")
    apply(scenario, customer, card)
    result = await terminal.serve_one()
    customer.pinpad.clear_script()
    view: dict[str, Any] = {"outcome": result.outcome if result else "no session"}
    if result is None:
        return view
    for entry in terminal.journal.tail(200, session=result.session_id):
        if entry.event == "role_chosen":
            view["granted"] = entry.data
        elif entry.event == "menu_offered":
            view["atm_menu"] = entry.data["choices"]
        elif entry.event == "accounts_offered":
            view["atm_accounts"] = entry.data["accounts"]
    return view


async def play(
    terminal: Terminal,
    customer: Customer,
    seed: Path,
    cards: dict[str, tuple[CardData, str]],
    api_url: str,
    ca: Path | None,
) -> dict[str, Any]:
    """Each role's view (API and ATM), refusals and a maker-checker change."""
    table, held = company_table(seed)
    views = []
    for entry in table:
        role, department = entry["role"], entry["department"]
        user = _holder(held, role, department)
        session = await asyncio.to_thread(_login, api_url, ca, user, role, department)
        name, pin = CARDS[user]
        card, _ = cards[name]
        index = held[user].index(f"{role}@{department}")
        atm = await atm_view(terminal, customer, card, pin, index)
        operations, accounts = sorted(entry["operations"]), sorted(entry["accounts"])
        atm_menu = [choice for op, choice in ATM_CHOICES if op in operations]
        view = {
            "user": user,
            "role": role,
            "department": department,
            "operations": session["operations"],
            "accounts": [a["account"] for a in session["accounts"]],
            "atm_menu": atm.get("atm_menu", []),
            "atm_accounts": atm.get("atm_accounts", []),
        }
        view["ok"] = (
            view["operations"] == operations
            and view["accounts"] == accounts
            and view["atm_menu"] == atm_menu
            and view["atm_accounts"] == accounts
            and atm["outcome"] == "cancelled"
        )
        views.append(view)
    refusals, change = await asyncio.to_thread(_refusals_and_change, api_url, ca)
    return {"enterprise": views, "enterprise_refusals": refusals, "enterprise_change": change}


def _login(api_url: str, ca: Path | None, user: str, role: str, dept: str) -> dict[str, Any]:
    with EnterpriseClient(api_url, ca=ca) as client:
        return client.login(COMPANY, user, PASSWORDS[user], role, dept)


def _refused(attempt: str, status: int, call: Any) -> dict[str, Any]:
    try:
        call()
    except BankApiError as exc:
        return {"attempt": attempt, "status": exc.status, "ok": exc.status == status}
    return {"attempt": attempt, "status": 200, "ok": False}


def _refusals_and_change(api_url: str, ca: Path | None) -> tuple[list[dict[str, Any]], Any]:
    with (
        EnterpriseClient(api_url, ca=ca) as jan,
        EnterpriseClient(api_url, ca=ca) as ana,
        EnterpriseClient(api_url, ca=ca) as ben,
        EnterpriseClient(api_url, ca=ca) as anon,
    ):
        refusals = [
            _refused(
                "jan claims trustee@custody, a role he does not hold",
                401,
                lambda: anon.login(COMPANY, "jan", PASSWORDS["jan"], "trustee", "custody"),
            )
        ]
        jan.login(COMPANY, "jan", PASSWORDS["jan"], "beneficiary", "custody")
        refusals.append(
            _refused(
                "beneficiary transfers from the distribution account",
                403,
                lambda: jan.transfer("2000000004", "2000000001", 1_000),
            )
        )
        refusals.append(
            _refused("beneficiary reads a statement", 403, lambda: jan.statement("2000000004"))
        )
        anon.token = "forged-token"
        refusals.append(_refused("a forged session token", 401, lambda: anon.session()))
        ana.admin_login("admin-ana", ADMINS["admin-ana"])
        ben.admin_login("admin-ben", ADMINS["admin-ben"])
        before = jan.session()["operations"]
        proposed = ana.propose(
            COMPANY, "beneficiary", "custody", ["balance", "statement"], ["2000000004"]
        )
        refusals.append(
            _refused(
                "an administrator approves her own table change",
                403,
                lambda: ana.decide(proposed["id"], True),
            )
        )
        applied = ben.decide(proposed["id"], True)
        after = jan.session()["operations"]  # the same session, its next request
        lines = len(jan.statement("2000000004")["lines"])
        change = {
            "change": "beneficiary@custody: + statement on 2000000004",
            "maker": applied["maker"],
            "checker": applied["checker"],
            "status": applied["status"],
            "operations_before": before,
            "operations_after": after,
            "statement_lines_after": lines,
            "ok": before == ["balance"] and after == ["balance", "statement"] and lines > 0,
        }
    return refusals, change
