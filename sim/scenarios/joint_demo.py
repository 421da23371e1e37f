"""Joint accounts in the demo: sessions at the ATM, decisions on the co-owners' phones.

While the ATM sessions run, :class:`CoOwnerPhones` plays the three co-owners' bank apps
over the host's real phone API: each polls its pending approvals and decides as the
scenario says (who decides, approve or reject; nobody, for the one that times out).
After the ATM sessions Gina's app asks to bind Jon, and all three authorise. The
notifications the host sent (approval requests, outcomes, the lock, bills) are then read
from its outbox and checked: exactly one bill per co-owner per finished operation, and
one lock notice per co-owner of the locked account.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

from atm_common.errors import AtmError
from sim.host import db
from sim.phone.joint import JointApp
from sim.scenarios.scripts import BALANCE, CONTINUE, WITHDRAW, Scenario
from terminal.drivers.pinpad.sim import CANCEL, Keys, Pin

JOINT_ACCOUNT, LOCKED_ACCOUNT = "1000000008", "1000000009"
CO_OWNERS = ("gina", "hugo", "iris")
TOKENS = {
    "gina": "demo-app-token-gina-0011",
    "hugo": "demo-app-token-hugo-0012",
    "iris": "demo-app-token-iris-0013",
    "jon": "demo-app-token-jon-0014",
}
PASSWORD, LOCKED_PASSWORD = "1470", "2581"


@dataclasses.dataclass(frozen=True)
class Decision:
    """Who decides a request of ``amount`` (minor units; 0 a balance), and how."""

    amount: int
    person: str | None  # None: nobody answers, the approval expires
    approve: bool = True


JOINT_DEMO: tuple[Scenario, ...] = (
    Scenario(
        "joint: withdrawal approved on a co-owner's phone",
        "GINA GRAF",
        [Pin(PASSWORD), Pin("3691"), WITHDRAW, Keys("100")],
        "dispensed",
        10_000,
    ),
    Scenario(
        "joint: withdrawal rejected by a co-owner",
        "HUGO HAHN",
        [Pin(PASSWORD), Pin("4812"), WITHDRAW, Keys("50")],
        "declined:J2",
    ),
    Scenario(
        "joint: withdrawal nobody approves in time",
        "IRIS IMHOF",
        [Pin(PASSWORD), Pin("5923"), WITHDRAW, Keys("70")],
        "declined:J3",
    ),
    Scenario(
        "joint: customer cancels on the waiting screen",
        "HUGO HAHN",
        [Pin(PASSWORD), Pin("4812"), WITHDRAW, Keys("40"), CANCEL],
        "cancelled",
    ),
    Scenario(
        "joint: balance approved on a co-owner's phone",
        "IRIS IMHOF",
        [Pin(PASSWORD), Pin("5923"), BALANCE, CONTINUE],  # CONTINUE: after the wait
        "balance_shown",
    ),
    Scenario(
        "joint: wrong personal codes lock the account",
        "GINA GRAF SAVINGS",
        [Pin(LOCKED_PASSWORD), Pin("0000")] * 3,
        "declined:J1",
    ),
    Scenario(
        "joint: a locked account refuses even the right password",
        "GINA GRAF SAVINGS",
        [Pin(LOCKED_PASSWORD)],
        "declined:J1",
    ),
)
DECISIONS = (
    Decision(10_000, "iris"),  # Gina asked: Iris approves
    Decision(5_000, "gina", approve=False),  # Hugo asked: Gina rejects
    Decision(7_000, None),  # Iris asked: nobody answers
    Decision(4_000, None),  # Hugo asked, then cancelled at the ATM before anyone answered
    Decision(0, "hugo"),  # Iris's balance: Hugo approves
)
# Operations that end with a bill: the approved withdrawal and the approved balance.
# (The waiting screen listens for CANCEL only, so a key scripted for after the wait
# stays on the scripted PIN pad: terminal/drivers/pinpad/sim.py.)
BILLED_SESSIONS = 2


class CoOwnerPhones(threading.Thread):
    """The co-owners' apps, deciding as :data:`DECISIONS` say, until :meth:`stop`.

    A thread, not a task: a terminal on real ptys blocks the event loop while it reads
    its PIN pad, and the phones must go on answering meanwhile."""

    def __init__(self, api_url: str, ca: Path | None, decisions: tuple[Decision, ...]) -> None:
        super().__init__(name="co-owner-phones", daemon=True)
        self.apps = {p: JointApp(api_url, TOKENS[p], ca=ca) for p in CO_OWNERS}
        self.decisions = {d.amount: d for d in decisions}
        self.decided: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.2):
            for person, app in self.apps.items():
                try:
                    for approval in app.pending():
                        self._maybe_decide(person, app, approval)
                except AtmError as exc:
                    self.errors.append(str(exc))

    def _maybe_decide(self, person: str, app: JointApp, approval: dict[str, Any]) -> None:
        decision = self.decisions.get(approval["amount"])
        if approval["kind"] == "bind" or decision is None or decision.person != person:
            return
        app.decide(approval["approval_id"], decision.approve)
        self.decided.append({"person": person, "approve": decision.approve, **approval})

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        for app in self.apps.values():
            app.close()


def bind_jon(api_url: str, ca: Path | None) -> dict[str, Any]:
    """Gina's app asks to bind Jon (his identity checked), and all three authorise."""
    apps = {p: JointApp(api_url, TOKENS[p], ca=ca) for p in CO_OWNERS}
    try:
        asked = apps["gina"].bind(JOINT_ACCOUNT, "jon", "ID-DE-0014", "6034")
        statuses = [apps[p].decide(asked["approval_id"], True)["status"] for p in CO_OWNERS]
    finally:
        for app in apps.values():
            app.close()
    bound = statuses[-1] == "used" and all(s == "pending" for s in statuses[:-1])
    return {
        "name": "joint: adding a co-owner, authorised by all three",
        "outcome": "bound" if bound else f"not bound ({statuses[-1]})",
        "expected": "bound",
        "ok": bound,
        "states": [],
        "dispensed": 0,
        "account": JOINT_ACCOUNT,
        "card": "-",
        "unused_inputs": 0,
    }


def notifications(db_path: Path) -> list[dict[str, Any]]:
    """The joint-account notices and bills the host queued, in order (masked phones)."""
    conn = db.connect_readonly(db_path)
    try:
        rows = conn.execute(
            "SELECT kind, payload FROM outbox WHERE kind IN ('sms', 'bill') ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    out = []
    for row in rows:
        p = json.loads(row["payload"])
        purpose = str(p.get("purpose", ""))
        if row["kind"] == "sms" and not purpose.startswith("joint-"):
            continue
        item = {
            "kind": "bill" if row["kind"] == "bill" else purpose.removeprefix("joint-"),
            "to": p.get("to_masked", ""),
            "person": p.get("person"),
            "account": p.get("account"),
        }
        if row["kind"] == "bill":
            item |= {k: p[k] for k in ("bill_id", "operation", "amount", "place", "points")}
            item["total_points"] = p["total_points"]
        elif p.get("approval_id"):
            item["approval"] = str(p["approval_id"])[:8]
        out.append(item)
    return out


def check_notifications(items: list[dict[str, Any]]) -> bool:
    """One bill per co-owner per finished operation; one lock notice per co-owner."""
    bills: dict[str, list[str]] = collections.defaultdict(list)
    for item in items:
        if item["kind"] == "bill":
            bills[item["bill_id"]].append(item["person"])
    if len(bills) != BILLED_SESSIONS:
        return False
    if any(sorted(people) != sorted(CO_OWNERS) for people in bills.values()):
        return False
    locks = [i["person"] for i in items if i["kind"] == "lock" and i["account"] == LOCKED_ACCOUNT]
    return sorted(locks) == sorted(CO_OWNERS)
