"""The demo as a user runs it: `atm demo --json` in its own process, with the host in
another, over real TCP and real SQLite files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.scenarios.cardless_demo import CARDLESS_DEMO, CardlessScenario
from sim.scenarios.enterprise_demo import ENTERPRISE_ATM, company_table
from sim.scenarios.joint_demo import CO_OWNERS, JOINT_DEMO, LOCKED_ACCOUNT
from sim.scenarios.scripts import DEMO, Scenario
from sim.scenarios.supervisor_demo import SESSIONS as SUPERVISOR_SESSIONS
from tests.host.helpers import DEMO_SEED

pytestmark = pytest.mark.e2e

ATM = [sys.executable, "-m", "atm"]
EVERY: tuple[Scenario | CardlessScenario, ...] = (
    *DEMO,
    *CARDLESS_DEMO,
    *ENTERPRISE_ATM,
    *JOINT_DEMO,
)


SITES = {  # the demo seed's register of its terminals
    "ATM00001": ("Main Street branch", 52.52, 13.405),
    "ATM00002": ("Airport hall B", 52.3667, 13.5033),
}


@pytest.mark.parametrize("security", ["tdes", "aes-dukpt"])
def test_demo_json_reports_every_expected_outcome_and_reconciles(
    tmp_path: Path, security: str
) -> None:
    run = subprocess.run(
        [*ATM, "demo", "--json", "--security", security, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["security"] == security
    assert report["reconciled"] is True
    assert report["outcomes_as_expected"] is True
    assert report["ledger_problems"] == []
    by_name = {s["name"]: s for s in report["sessions"]}
    bind = "joint: adding a co-owner, authorised by all three"
    assert set(by_name) == {s.name for s in EVERY} | {bind} | set(SUPERVISOR_SESSIONS)
    # supervisor_demo.py: a balancing difference reported, paper out, a jam then cleared
    assert report["supervisor"]["ok"] and report["device_status"]["ok"]
    exchange = report["supervisor"]["exchange"]
    assert exchange["difference"] == exchange["found"] - exchange["host_expected"] != 0
    assert Path(report["supervisor"]["report"]["png"]).stat().st_size > 0
    assert "DIFFERENCE" in Path(report["supervisor"]["report"]["text"]).read_text()
    assert report["ok"] is True and by_name[bind]["outcome"] == "bound"
    for scenario in EVERY:
        session = by_name[scenario.name]
        assert session["outcome"] == scenario.expected
        assert session["dispensed"] == scenario.expected_dispensed
        assert session["states"][-1] == "idle"
    expected_cash = sum(s.expected_dispensed for s in EVERY)
    assert report["cash_handed_out"] == expected_cash
    # cardless: fees charged only for collected reservations; nothing left frozen
    fees = {a["account"]: a for a in report["accounts"]}["GL-FEES-CARDLESS"]
    assert fees["change"] == sum(
        s["fee"] for s in report["sessions"] if s.get("fee") and s["outcome"] == "dispensed"
    )
    assert all(a["held"] == 0 for a in report["accounts"])
    # the duress session: exactly one silent alarm, where the terminal stands, within the cap
    (alarm,) = report["alarms"]
    assert report["alarms_as_expected"] is True
    assert alarm["terminal_id"] == report["terminal_id"] and alarm["masked_pan"].endswith("0051")
    # at the terminal's registered site (ATM00002 is at the airport, not Main Street), with
    # what the terminal itself reported alongside
    name, lat, lon = SITES[report["terminal_id"]]
    where = alarm["location"]
    assert (where["source"], where["site"], where["lat"], where["lon"]) == (
        "register",
        name,
        lat,
        lon,
    )
    assert where["reported"]["source"] == "site" and where["distance_m"] < 1.0
    duress = next(s for s in report["sessions"] if s["name"].startswith("duress"))
    assert 0 < duress["dispensed"] <= 30_000 and alarm["amount_requested"] == duress["dispensed"]
    assert [e["content_type"] for e in alarm["evidence"]] == ["image/jpeg", "image/jpeg"]
    # enterprise: every role's view, at the API and the ATM, is the demo company's table
    table, _ = company_table(DEMO_SEED)
    views = {(v["role"], v["department"]): v for v in report["enterprise"]}
    assert len(views) == len(table) and {r for r, _ in views} >= {
        "asset_manager",
        "trustee",
        "settlor",
        "beneficiary",
        "outsourced_manager",
    }
    for entry in table:
        view = views[(entry["role"], entry["department"])]
        assert view["operations"] == sorted(entry["operations"])
        assert view["accounts"] == view["atm_accounts"] == sorted(entry["accounts"])
        atm = (("withdraw", "withdrawal"), ("balance", "balance"))  # what an ATM can do
        assert view["atm_menu"] == [c for op, c in atm if op in entry["operations"]]
        assert view["ok"] is True
    assert [r["status"] for r in report["enterprise_refusals"]] == [401, 403, 403, 401, 403]
    assert report["enterprise_change"]["operations_after"] == ["balance", "statement"]
    # joint accounts: one bill per co-owner for the approved withdrawal and the approved
    # balance (none for the one cancelled on the waiting screen), a lock notice each
    notes = report["notifications"]
    assert report["joint_as_expected"] is True
    bills = [n for n in notes if n["kind"] == "bill"]
    for operation, amount in (("withdrawal", 10_000), ("balance", 0)):
        these = [b for b in bills if b["operation"] == operation]
        assert sorted(b["person"] for b in these) == sorted(CO_OWNERS), bills
        assert all(b["amount"] == amount and b["to"].startswith("+49") for b in these)
    assert len(bills) == 2 * len(CO_OWNERS) and all("*" in b["to"] for b in bills)
    cancelled = [n for n in notes if n["kind"] == "outcome" and n["person"] == "hugo"]
    assert len(cancelled) == 2  # rejected by Gina; cancelled at the ATM
    locks = [n for n in notes if n["kind"] == "lock"]
    assert sorted(n["person"] for n in locks) == sorted(CO_OWNERS)
    assert {n["account"] for n in locks} == {LOCKED_ACCOUNT}
    changes = {a["account"]: a["change"] for a in report["accounts"]}
    assert changes["2000000001"] == -10_000 and changes["2000000003"] == -5_000
    assert changes[f"GL-CASH-{report['terminal_id']}"] == -report["cash_handed_out"]
    # files the run wrote: the journal and the host database hold no full PAN
    for path in (p for p in tmp_path.iterdir() if p.is_file()):  # pki/: certificates
        data = path.read_bytes()
        assert b"4761739001010010" not in data, path
    # payment-app bindings: the three paths bind, the failures fail, both sides agree
    bindings = {b["name"]: b for b in report["bindings"]}
    assert report["bindings_as_expected"] is True and report["bindings_agree"] is True
    assert {b["path"] for b in report["bindings"] if b["status"] == "bound"} == {
        "atm_qr",
        "app_qr",
        "push",
    }
    assert bindings["bind at the ATM by QR"]["app_user"] == "a*******p"
    assert bindings["an expired address at the ATM"]["status"] == "expired"
    assert bindings["a second scanner is refused"]["status"] == "refused"
    assert b"1000000001" not in (tmp_path / "payapp.db").read_bytes()  # no account number


def test_demo_human_output(tmp_path: Path) -> None:
    run = subprocess.run(
        [*ATM, "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "reconciled: true" in run.stdout
    assert "withdrawal: dispensed" in run.stdout
    assert "[ok ] jan as beneficiary in custody: operations balance; accounts 2000000004" in (
        run.stdout
    )
    assert "[BAD]" not in run.stdout
    # the supervisor day: attention raised and cleared at the host, balanced to the cent
    assert "at the host, dispenser jam: dispenser now (engineer)" in run.stdout
    assert "by staff card + PIN (role given by the host: technician)" in run.stdout
    assert "difference -20.00 (expected -20.00)" in run.stdout
    report = (tmp_path / "printer" / "balancing-report.txt").read_text()
    assert "DIFFERENCE                        -20.00" in report
    assert (tmp_path / "printer" / "balancing-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tail = subprocess.run(
        [*ATM, "journal", "tail", "--journal", str(tmp_path / "journal.db"), "-n", "5"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = tail.stdout.strip().splitlines()
    assert len(lines) == 5 and "terminal_stop" in lines[-1]


def test_host_bad_seed_is_a_clear_error(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text('[host]\npvk = "XYZ"\npan_key = "00"\n')
    run = subprocess.run(
        [
            *ATM,
            "host",
            "--plain",
            "--db",
            str(tmp_path / "h.db"),
            "--seed",
            str(seed),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 3  # ExitCode.CONFIG
    assert f"{seed}: host.pvk: is not hexadecimal" in run.stderr


def test_fsm_diagram_command(tmp_path: Path) -> None:
    run = subprocess.run(
        [*ATM, "fsm", "--diagram", str(tmp_path / "fsm.svg")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "fsm.mmd").read_text().startswith("stateDiagram-v2")
    assert "<svg" in (tmp_path / "fsm.svg").read_text()


@pytest.mark.serial_pty
def test_demo_over_ptys(tmp_path: Path) -> None:
    """Dispenser (LCDM), PIN pad (EPP) and GPS (NMEA) emulators behind real ptys."""
    run = subprocess.run(
        [*ATM, "demo", "--json", "--devices", "pty", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["devices"] == "pty"
    assert report["reconciled"] and report["outcomes_as_expected"]
    (alarm,) = report["alarms"]
    assert alarm["location"]["source"] == "register"  # the bank's register wins, and
    assert alarm["location"]["reported"]["source"] == "gps"  # the NMEA emulator's fix came too
    assert report["cash_handed_out"] == sum(s.expected_dispensed for s in EVERY)


@pytest.mark.pcsc
def test_demo_over_pcsc(tmp_path: Path) -> None:
    """Every card of the demo read over PC/SC: virtual EMV cards through a real pcscd."""
    run = subprocess.run(
        [*ATM, "demo", "--json", "--card-reader", "pcsc", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["card_reader"] == "pcsc"
    assert report["reconciled"] and report["outcomes_as_expected"]
    unreadable = next(s for s in report["sessions"] if s["name"] == "unreadable card")
    assert unreadable["outcome"] == "card_unreadable"  # a mute chip, through pcscd
    journal = (tmp_path / "journal.db").read_bytes()
    assert b"card_unreadable" in journal and b"4761739001010010" not in journal
