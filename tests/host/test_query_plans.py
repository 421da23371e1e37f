"""Every SQL statement on the host's request path finds its rows through an index.

The host's cost per request must not grow with its history: a query that scans
``transfers`` (or ``requests``, ``network_requests``, the alarms, the reservations ...)
is as cheap as any other on a fresh database and dominates once the bank has served a
few hundred thousand withdrawals. So this test serves a realistic mix of requests
through :meth:`Authoriser.handle`, records every statement the host runs on its
connection (``set_trace_callback``), and asks SQLite for the plan of each: no ``SCAN``
of any table is allowed except the few listed in :data:`SCANS_ALLOWED`. The plan does
not depend on how many rows there are (the host never runs ``ANALYZE``), so a small
database shows the plan a large one gets. No timing: ``bench/bench_host_history.py``
measures the cost per request against the size of the history.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from host_link.codec import Message
from host_link.codes import Mti
from host_link.evidence import (
    PART_CHARS,
    RESPONSE_CHARS,
    decode_sealed,
    encode_sealed,
    parse_request,
    part_plaintexts,
)
from sim.host.cardless.faces import enrolled_template
from sim.host.cardless.phone import PhoneBank
from tests.cardless.helpers import atm_request, reserve
from tests.host.helpers import CARDS, Host, Terminal

# Tables a request may read whole, and why. Empty: every table the request path touches
# is reached by its primary key or an index. Fixed tables (accounts, cards, terminals,
# card_accounts) would be tolerable here, but they too are read by key, so even they
# are not listed: a new scan of any table must be a decision, made here.
SCANS_ALLOWED: dict[str, str] = {}

# Statements whose plans say nothing (no table is read): transaction control, pragmas.
_NO_PLAN = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA|CREATE)\b", re.I)
# "FROM transfers r", "JOIN transfers AS o", "UPDATE terminals SET": alias -> table.
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", re.I)
_NOT_ALIAS = {"where", "on", "set", "join", "left", "inner", "cross", "order", "group",
              "limit", "values", "using", "select", "default", "as"}  # fmt: skip
_SCAN = re.compile(r"^SCAN (\w+)")

ERIN, ALICE, CAROL = CARDS["erin"], CARDS["alice"], CARDS["carol"]
DURESS_PIN = "0852"  # Erin's, from the demo seed


@dataclasses.dataclass
class Recorder:
    """The statements run on ``conn`` while ``on`` is set (SQLite's expanded SQL)."""

    statements: list[str] = dataclasses.field(default_factory=list)
    on: bool = False

    def __call__(self, sql: str) -> None:
        if self.on:
            self.statements.append(sql)


def tables_of(sql: str) -> dict[str, str]:
    """Each name a table goes by in ``sql`` (its alias, and its own name) -> the table."""
    names: dict[str, str] = {}
    for table, alias in _TABLE_REF.findall(sql):
        names[table.lower()] = table.lower()
        if alias and alias.lower() not in _NOT_ALIAS:
            names[alias.lower()] = table.lower()
    return names


def scans(conn: sqlite3.Connection, sql: str) -> list[tuple[str, str]]:
    """(table, plan line) of each full scan in the plan of ``sql``.

    The plan of an ``INSERT .. VALUES .. RETURNING`` lists the foreign-key programs that
    look for child rows of the new row (scans of the referencing tables); SQLite never
    runs them for an insert (a new row has no children yet: the cost of such an insert
    was measured flat from 10^3 to 3*10^5 rows), so an INSERT that reads no table (no
    SELECT) has no scans counted. Every other statement's scans are."""
    names = tables_of(sql)
    upper = sql.upper()
    insert = upper.lstrip().startswith("INSERT") and "SELECT" not in upper
    found = []
    for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
        detail = str(row[3])
        match = _SCAN.match(detail)
        if match and match.group(1) != "CONSTANT":
            if insert:
                continue
            found.append((names.get(match.group(1).lower(), match.group(1).lower()), detail))
    return found


def plan_problems(conn: sqlite3.Connection, statements: list[str]) -> list[str]:
    problems = []
    for sql in dict.fromkeys(statements):  # each distinct statement once, in order
        if _NO_PLAN.match(sql):
            continue
        for table, detail in scans(conn, sql):
            if table not in SCANS_ALLOWED:
                problems.append(f"{detail} (table {table}) in: {' '.join(sql.split())}")
    return problems


def ok(host: Host, request: Message, code: str = "00") -> Message:
    response = host.authoriser.handle(request, "10.0.0.9")
    assert response is not None and response["39"] == code, response
    return response


def serve_a_day(host: Host, clock: ManualClock, recorder: Recorder) -> None:
    """Sign-on, inquiries, withdrawals, repeats, reversals, duress, evidence, cardless."""
    bank = PhoneBank(host.authoriser.cardless)
    probe = enrolled_template(host.conn, "frank")  # what the phone's camera saw: Frank
    assert probe is not None
    reservation = reserve(bank, probe, amount=10_000)  # the phone's side: not traced
    reservation_code = str(reservation["code"])
    terminal = Terminal(clock)
    recorder.on = True

    terminal.key_exchange(host)
    ok(host, terminal.client.stamp({"t": "0800", "70": "001"}))  # sign-on
    ok(host, terminal.echo())
    ok(host, terminal.balance_inquiry(ALICE))
    ok(host, terminal.balance_inquiry(ALICE, pin="0000"), "55")  # a wrong PIN counts
    withdrawal = terminal.withdrawal(ALICE, 20_000)
    approved = ok(host, withdrawal)
    assert host.authoriser.handle(dict(withdrawal)) == approved  # a repeat: stored answer
    ok(host, terminal.reversal(withdrawal))  # 0400: all of it back
    ok(host, terminal.reversal(withdrawal))  # again, new STAN: nothing more
    partial = terminal.withdrawal(CAROL, 20_000)
    ok(host, partial)
    ok(host, terminal.reversal(partial, dispensed=5_000))  # 0420: the undispensed part
    ok(host, terminal.withdrawal(ALICE, 10_000))  # the limit counts the reversed one out
    never_sent = terminal.withdrawal(CAROL, 1_000)
    ok(host, terminal.reversal(never_sent))  # overtook its original: remembered
    ok(host, never_sent, "12")  # which then is refused

    # duress: the alarm, its follow-up, and a snapshot part under the evidence reference
    asked_for = ok(host, terminal.balance_inquiry(ERIN, pin=DURESS_PIN))
    ok(host, terminal.withdrawal(ERIN, 10_000, pin=DURESS_PIN))
    sealed = decode_sealed(asked_for["63"], RESPONSE_CHARS)
    asked = parse_request(terminal.pad.decrypt_response_data(sealed, asked_for.get("53")))
    assert asked is not None
    part = part_plaintexts(asked.ref, 0, b"\xffjpeg")[0]
    field = encode_sealed(terminal.pad.encrypt_advice_data(part))
    assert len(field) == PART_CHARS
    ok(host, terminal.client.stamp({"t": "0620", "63": field}))
    # a decoy request for snapshots in a normal session
    authoriser = host.authoriser
    authoriser.settings = dataclasses.replace(authoriser.settings, evidence_sample=1.0)
    ok(host, terminal.balance_inquiry(CAROL))

    # cardless: the code at the ATM, the cash, a reversal, and a phone with nothing left
    ok(host, atm_request(terminal, code=reservation_code))
    cash = atm_request(terminal, mti=Mti.FINANCIAL_REQUEST, code=reservation_code, amount=10_000)
    ok(host, cash)
    ok(host, terminal.reversal(cash, dispensed=4_000))
    ok(host, atm_request(terminal, code=reservation_code), "14")  # spent: none active now
    ok(host, terminal.client.stamp({"t": "0800", "70": "002"}))  # sign-off
    recorder.on = False


def test_every_statement_on_the_request_path_uses_an_index(host: Host, clock: ManualClock) -> None:
    recorder = Recorder()
    host.authoriser.key_store.shared = True  # --workers: working keys read on every use
    host.conn.set_trace_callback(recorder)
    try:
        serve_a_day(host, clock, recorder)
    finally:
        host.conn.set_trace_callback(None)
    assert host.ledger.check() == []
    # the mix reached what matters: the daily limit, "already reversed?", idempotency,
    # the 0800 replay guard, the duress alarm, the evidence parts, the reservations
    text = "\n".join(recorder.statements)
    for needle in (
        "r.reverses_id = o.id",
        "FROM transfers WHERE reverses_id",
        "FROM requests",
        "DELETE FROM network_requests",
        "FROM duress_alarms WHERE pan_ref",
        "FROM evidence_parts",
        "DELETE FROM evidence_decoys",
        "FROM reservations WHERE phone",
        "FROM reservation_transfers WHERE reservation_id",
        "FROM terminal_keys WHERE terminal_id",
    ):
        assert needle in text, f"the mix never ran {needle!r}"
    assert plan_problems(host.conn, recorder.statements) == []


@pytest.fixture
def host_db(tmp_path: Path) -> Path:
    """SQLite only: the plans read here are SQLite's (``EXPLAIN QUERY PLAN``); the
    PostgreSQL engine runs the same statements against the same indexes."""
    return tmp_path / "host.db"


def test_the_check_sees_a_scan() -> None:
    """The detector itself: a scan of a history table, through an alias, is found."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE transfers (id INTEGER PRIMARY KEY, reverses_id INTEGER)")
    sql = "SELECT 1 FROM transfers r JOIN transfers o ON r.reverses_id = o.id WHERE o.id = 1"
    assert [table for table, _ in scans(conn, sql)] == ["transfers"]
    assert plan_problems(conn, [sql]) != []
    assert plan_problems(conn, ["SELECT 1 FROM transfers WHERE id = 1"]) == []
