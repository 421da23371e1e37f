"""The headless demo: a real host process over mutual TLS, a terminal on simulated devices,
scripted customers, then reconciliation of every account against the cash handed out.

The run makes its own CA (:mod:`sim.pki`) in its work dir: the host serves the ISO port
with its certificate and requires the terminal's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from atm_common.clock import ManualClock, SystemClock
from atm_common.errors import AtmError
from atm_common.files import private_dir
from atm_common.progress import Progress
from atm_common.tls import TlsFiles, client_context
from sim.devices.key_injection import pinpad_options, terminal_for
from sim.devices.launcher import DEFAULT_CASSETTES, emulators_on_ptys
from sim.host import db
from sim.host.authoriser import EVIDENCE_SNAPSHOTS
from sim.host.ledger import Ledger, balance_of
from sim.host.seed import read_toml
from sim.pki import Pki, make_pki
from sim.scenarios.binding_demo import BindingWorld, host_args, payapp_process
from sim.scenarios.binding_play import play as play_binding
from sim.scenarios.cardless_demo import CARDLESS_DEMO, CardlessScenario
from sim.scenarios.cardless_demo import play as play_cardless
from sim.scenarios.enterprise_demo import ENTERPRISE_ATM
from sim.scenarios.enterprise_demo import play as play_enterprise
from sim.scenarios.joint_demo import (
    DECISIONS,
    JOINT_DEMO,
    CoOwnerPhones,
    bind_jon,
    check_notifications,
    notifications,
)
from sim.scenarios.scripts import DEMO, DURESS_CARDS, Customer, Scenario, apply
from sim.scenarios.supervisor_demo import attach_printer, keep_counters, rebase_cash
from sim.scenarios.supervisor_demo import play as play_supervisor
from sim.service_auth import load_token, new_host_key_file, new_token_file
from sim.services import ServiceProcess, log_args, service_process
from terminal.app import Terminal
from terminal.config import HostConfig, SiteLocation, TerminalConfig, Timeouts
from terminal.devices import Devices
from terminal.drivers.base import create_device
from terminal.drivers.camera.sim import SimCamera
from terminal.drivers.card_reader.base import CardData
from terminal.drivers.card_reader.sim import SimCardReader
from terminal.drivers.dispenser.base import Dispenser
from terminal.drivers.dispenser.sim import SimDispenser
from terminal.drivers.gps.base import Gps
from terminal.drivers.pinpad.base import PinPad
from terminal.drivers.pinpad.sim import SimPinPad
from terminal.ui import RecordingDisplay

log = logging.getLogger(__name__)

DEMO_SEED = Path(__file__).resolve().parent.parent / "data" / "demo-seed.toml"
TERMINAL_ID = "ATM00001"
BINDING_SECONDS = 12.0  # the demo's binding addresses live this long (the expired case waits)


@dataclasses.dataclass
class HostProcess(ServiceProcess):
    """``atm host`` running: its database, and its phone API when asked for."""

    db_path: Path = Path()
    api_url: str = ""


@contextlib.contextmanager
def host_process(
    db_path: Path,
    seed: Path,
    log_path: Path | None = None,
    *,
    alarm_center: str | None = None,
    carrier: str | None = None,
    api: bool = False,
    demo: bool = False,
    host_key_file: Path | None = None,
    pki: Pki | None,
    extra_args: Sequence[str] = (),
) -> Iterator[HostProcess]:
    """Run ``atm host`` as its own process on a free port; stop it on exit.

    With ``api`` the phone API listens too, on a free port of its own (``api_url``).
    ``demo`` passes ``--demo``: the seed holds the published demo keys (the demo bank, or
    a bank generated from it), which the host otherwise refuses. ``host_key_file`` signs
    its requests to the alarm center and the carrier. ``pki`` serves the ISO port over
    mutual TLS (``--tls-dir``); None is plain TCP (``--plain``), which a caller must say.
    """
    args = ["--db", str(db_path), "--seed", str(seed), *log_args(log_path)]
    args += ["--tls-dir", str(pki.directory)] if pki is not None else ["--plain"]
    if demo:
        args.append("--demo")
    if alarm_center:
        args += ["--alarm-center", alarm_center]
    if carrier:
        args += ["--carrier", carrier]
    if host_key_file is not None:
        args += ["--host-key-file", str(host_key_file)]
    if api:
        args += ["--api-port", "0", "--sms-inbox"]  # the demo's phone reads its texts there
    args += extra_args  # e.g. the payment server to bind accounts at (binding_demo)
    with service_process("host", args) as service:
        handle = HostProcess(service.name, service.process, service.address, service.port, db_path)
        if api:
            assert service.process.stdout is not None
            line = service.process.stdout.readline()
            if not line.startswith("api on "):
                raise AtmError(f"host API did not start: {line.strip()!r}")
            handle.api_url = line.split()[-1]
        yield handle


def seed_cards(seed: Path) -> dict[str, tuple[CardData, str]]:
    """Cards by holder name and by PAN -> (card data, first account)."""
    out: dict[str, tuple[CardData, str]] = {}
    for row in read_toml(seed).get("cards", []):
        card = CardData(pan=row["pan"], expiry=row["expiry"], name=row.get("name", ""))
        card = dataclasses.replace(card, track2=f"{card.pan}={card.expiry}201")
        entry = (card, row["accounts"][0])
        out.setdefault(card.name, entry)
        out[card.pan] = entry
    return out


def ledger_snapshot(db_path: Path) -> dict[str, int]:
    conn = db.connect_readonly(db_path)
    try:
        return {row["id"]: balance_of(row).ledger for row in conn.execute("SELECT * FROM accounts")}
    finally:
        conn.close()


def holds_snapshot(db_path: Path) -> dict[str, int]:
    """Money frozen by pending transfers (cardless reservations), per account."""
    conn = db.connect_readonly(db_path)
    try:
        return {row["id"]: row["debits_pending"] for row in conn.execute("SELECT * FROM accounts")}
    finally:
        conn.close()


def ledger_problems(db_path: Path) -> list[str]:
    conn = db.connect_readonly(db_path)
    try:
        return Ledger(conn, ManualClock()).check()
    finally:
        conn.close()


async def run_sessions(
    terminal: Terminal,
    customer: Customer,
    scenarios: Sequence[Scenario],
    cards: dict[str, tuple[CardData, str]],
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    results = []
    for number, scenario in enumerate(scenarios, 1):
        if progress is not None:
            progress.step(f"session {number} of {len(scenarios)}: {scenario.name}")
        card, account = cards[scenario.card]
        apply(scenario, customer, card)
        before = customer.dispenser.handed_out_amount
        result = await terminal.serve_one()
        handed = customer.dispenser.handed_out_amount - before
        outcome = result.outcome if result else f"no session ({terminal.out_of_service_reason})"
        leftover = customer.pinpad.clear_script()  # never leak into the next session
        ok = (
            outcome == scenario.expected
            and handed == scenario.expected_dispensed
            and (result is None or result.dispensed == handed)
            and leftover == 0
        )
        results.append(
            {
                "name": scenario.name,
                "outcome": outcome,
                "expected": scenario.expected,
                "ok": ok,
                "states": result.states if result else [],
                "dispensed": handed,
                "account": account,
                "card": card.masked_pan,
                "unused_inputs": leftover,
            }
        )
    return results


def reconcile(
    opening: dict[str, int],
    closing: dict[str, int],
    sessions: list[dict[str, Any]],
    handed_out: int,
    terminal_id: str = TERMINAL_ID,
    holds: dict[str, int] | None = None,
) -> tuple[bool, list[dict[str, Any]]]:
    """Every account's balance change must equal minus the cash its sessions received and
    the fees charged for it; nothing may stay frozen once every reservation is settled."""
    charged: dict[str, int] = {}
    fees = 0
    for s in sessions:
        fee = s.get("fee", 0) if s["outcome"] == "dispensed" else 0
        fees += fee
        charged[s["account"]] = charged.get(s["account"], 0) + s["dispensed"] + fee
    holds = holds or {}
    rows, ok = [], True
    for account in sorted(closing):
        change = closing[account] - opening.get(account, 0)
        if account.startswith("GL-CASH-"):
            expected = -handed_out if account == f"GL-CASH-{terminal_id}" else 0
        elif account.startswith("GL-FEES"):
            expected = fees
        elif account.startswith("GL-"):
            continue
        else:
            expected = -charged.get(account, 0)
        held = holds.get(account, 0)
        good = change == expected and held == 0
        ok &= good
        rows.append(
            {
                "account": account,
                "opening": opening.get(account, 0),
                "closing": closing[account],
                "change": change,
                "expected_change": expected,
                "held": held,
                "ok": good,
            }
        )
    return ok, rows


def registered_site(terminal_id: str) -> tuple[str, SiteLocation]:
    """The site the demo bank registered ``terminal_id`` at: each demo terminal is set up
    where it stands (ATM00002 at the airport, not at Main Street)."""
    for term in read_toml(DEMO_SEED).get("terminals", []):
        if term.get("id") == terminal_id and "lat" in term and "lon" in term:
            return str(term.get("site", "ATM")), SiteLocation(
                float(term["lat"]), float(term["lon"])
            )
    raise AtmError(f"{DEMO_SEED}: terminal {terminal_id} has no registered site")


def _config(
    workdir: Path, port: int, terminal_id: str, timeouts: Timeouts, tls: TlsFiles | None
) -> TerminalConfig:
    name, site = registered_site(terminal_id)
    return TerminalConfig(
        terminal_id=terminal_id,
        location=name,
        journal=workdir / "journal.db",
        site=site,
        host=HostConfig(port=port, timeout=10.0, tls=tls, plain=tls is None),
        timeouts=timeouts,
    )


def demo_terminal(
    workdir: Path,
    port: int,
    seed: Path,
    clock: ManualClock,
    terminal_id: str = TERMINAL_ID,
    *,
    tls: TlsFiles | None,
) -> Terminal:
    """A terminal on in-process simulated devices and a manual clock.

    ``tls``: its certificate and the CA (``Pki.terminal(id)``); None is plain TCP, for a
    host started plain (the caller says so).
    """
    devices = Devices(
        card_reader=SimCardReader(clock),
        pinpad=SimPinPad(clock, **pinpad_options(seed, terminal_id)),
        dispenser=SimDispenser(clock, cassettes=DEFAULT_CASSETTES),
        camera=SimCamera(clock, width=320, height=240),
    )
    config = _config(workdir, port, terminal_id, Timeouts(), tls)
    return Terminal(config, clock=clock, devices=devices, display=RecordingDisplay())


def sim_customer(terminal: Terminal) -> Customer:
    devices = terminal.devices
    assert isinstance(devices.card_reader, SimCardReader)
    assert isinstance(devices.pinpad, SimPinPad) and isinstance(devices.dispenser, SimDispenser)
    return Customer(devices.card_reader, devices.pinpad, devices.dispenser)


# Over real ptys the clock is real: customer timeouts are short so the demo stays quick.
PTY_TIMEOUTS = Timeouts(pin=2.0, menu=2.0, amount=2.0, balance=2.0, take_cash=2.0, take_card=2.0)


@contextlib.contextmanager
def pty_terminal(
    workdir: Path, port: int, seed: Path, terminal_id: str, *, tls: TlsFiles | None
) -> Iterator[tuple[Terminal, Customer]]:
    """A terminal whose dispenser, PIN pad and GPS are emulators behind real ptys."""
    clock = SystemClock()
    with emulators_on_ptys(seed, terminal_id, clock=clock) as emulated:
        sections = emulated.device_config()
        built = {
            kind: create_device(
                kind,
                section["backend"],
                clock=clock,
                **{k: v for k, v in section.items() if k != "backend"},
            )
            for kind, section in sections.items()
        }
        reader = SimCardReader(clock)
        dispenser, pinpad, gps = built["dispenser"], built["pinpad"], built["gps"]
        assert isinstance(dispenser, Dispenser) and isinstance(pinpad, PinPad)
        assert isinstance(gps, Gps)
        devices = Devices(
            card_reader=reader,
            pinpad=pinpad,
            dispenser=dispenser,
            gps=gps,
            camera=SimCamera(clock, width=320, height=240),
        )
        config = _config(workdir, port, terminal_id, PTY_TIMEOUTS, tls)
        terminal = Terminal(config, clock=clock, devices=devices, display=RecordingDisplay())
        yield terminal, Customer(reader, emulated.pinpad, emulated.dispenser)


async def run_demo(
    workdir: Path | None = None,
    scenarios: Sequence[Scenario] = DEMO,
    security: str = "tdes",
    devices: str = "sim",
    card_reader: str = "sim",
    cardless_scenarios: Sequence[CardlessScenario] = CARDLESS_DEMO,
    enterprise: bool = True,
    joint_scenarios: Sequence[Scenario] = JOINT_DEMO,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the whole demo; returns the report that ``atm demo --json`` prints.

    ``enterprise`` adds the corporate card sessions and each enterprise role's view
    (API and ATM), refusals and a maker-checker table change (enterprise_demo.py).
    ``progress`` is told each step (``atm demo`` on a terminal shows it).

    ``devices="pty"`` puts dispenser, PIN pad and GPS emulators behind real ptys;
    ``card_reader="pcsc"`` reads virtual EMV cards through a real pcscd.
    """
    progress = progress or Progress("demo", enabled=False)
    progress.step("starting the alarm center, the carrier and the bank host")
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="atm-demo-")))
        private_dir(workdir)  # databases, journal, logs of the run: the owner's only
        # this run's secrets: the key the host signs with, the token the desk reads with
        host_key = new_host_key_file(workdir / "host.key")
        token_file = new_token_file(workdir / "operator.token")
        terminal_id = terminal_for(DEMO_SEED, security)
        pki = make_pki(workdir / "pki", [terminal_id])  # the ISO link is mutual TLS
        alarms = stack.enter_context(
            service_process(
                "alarm-center",
                [
                    *("--db", str(workdir / "alarms.db"), "--host-key-file", str(host_key)),
                    *("--operator-token-file", str(token_file)),
                    *("--tls-dir", str(pki.directory)),  # mutual TLS: the host's certificate
                    *log_args(workdir / "alarm-center.log"),
                ],
            )
        )
        carrier = stack.enter_context(
            service_process(
                "carrier",
                [
                    *("--host-key-file", str(host_key), "--tls-dir", str(pki.directory)),
                    *log_args(workdir / "carrier.log"),
                ],
            )
        )
        payapp_key = new_host_key_file(workdir / "payapp.key")  # the bank <-> payment app
        payapp = stack.enter_context(payapp_process(workdir, payapp_key, pki))
        host = stack.enter_context(
            host_process(
                workdir / "host.db",
                DEMO_SEED,
                workdir / "host.log",
                alarm_center=alarms.url,
                carrier=carrier.url,
                api=True,
                demo=True,
                host_key_file=host_key,
                pki=pki,
                extra_args=[
                    *host_args(payapp.url, payapp_key),
                    *("--binding-seconds", str(BINDING_SECONDS)),
                ],
            )
        )
        opening = ledger_snapshot(host.db_path)
        tls = pki.terminal(terminal_id)
        if devices == "pty":
            terminal, customer = stack.enter_context(
                pty_terminal(workdir, host.port, DEMO_SEED, terminal_id, tls=tls)
            )
        else:
            clock = ManualClock(dt.datetime.now(dt.UTC))
            terminal = demo_terminal(workdir, host.port, DEMO_SEED, clock, terminal_id, tls=tls)
            customer = sim_customer(terminal)
        if card_reader == "pcsc":
            use_pcsc(stack, terminal, customer)
        printer = stack.enter_context(attach_printer(terminal, workdir))  # supervisor_demo
        if not terminal.start():
            raise AtmError(f"terminal did not go in service: {terminal.out_of_service_reason}")
        counters = stack.enter_context(keep_counters(terminal, workdir))  # devices open
        cards = seed_cards(DEMO_SEED)
        extra: dict[str, Any] = {}
        try:
            sessions = await run_sessions(terminal, customer, scenarios, cards, progress)
            for cardless in cardless_scenarios:
                progress.step(f"cardless: {cardless.name}")
                sessions.append(
                    await play_cardless(terminal, customer, host.api_url, cardless, pki.ca)
                )
            if enterprise:
                sessions += await run_sessions(terminal, customer, ENTERPRISE_ATM, cards)
                extra = await play_enterprise(
                    terminal, customer, DEMO_SEED, cards, host.api_url, pki.ca
                )
            joint_sessions, phone_errors = await play_joint(
                terminal, customer, host.api_url, pki.ca, joint_scenarios
            )
            sessions += joint_sessions
            world = BindingWorld(
                payapp.url, host.api_url, host.db_path, payapp_key, pki.ca, workdir / "apps"
            )
            alice = cards["ALICE ARDEN"]
            binding = await play_binding(world, terminal, customer, alice, workdir, BINDING_SECONDS)
            supervision, more = await play_supervisor(
                terminal, customer, cards, host.db_path, workdir, printer, counters, run_sessions
            )
            sessions += more
        finally:
            await terminal.close()
        closing = ledger_snapshot(host.db_path)
        rebase_cash(opening, terminal_id, supervision["supervisor"]["exchange"])
        holds = holds_snapshot(host.db_path)
        # the desk reads over mutual TLS too, with the center's own certificate
        desk = client_context(pki.service("alarm-center"))
        progress.step("collecting the alarms, checking the ledger")
        raised = await collect_alarms(alarms.url, scenarios, load_token(token_file), desk)
        alarms_ok = check_alarms(raised, scenarios, terminal_id, location_source(terminal))
        handed_out = customer.dispenser.handed_out_amount
        reconciled, accounts = reconcile(opening, closing, sessions, handed_out, terminal_id, holds)
        problems = ledger_problems(host.db_path)
        notices = notifications(host.db_path)
        joint_ok = not joint_scenarios or (check_notifications(notices) and not phone_errors)
        enterprise_ok = (
            all(v["ok"] for v in extra.get("enterprise", []))
            and all(r["ok"] for r in extra.get("enterprise_refusals", []))
            and bool(extra.get("enterprise_change", {}).get("ok", True))
        )
        bindings_ok = bool(binding.get("bindings_as_expected", True))
        everything = reconciled and not problems and alarms_ok and joint_ok
        everything = everything and enterprise_ok and bindings_ok
        everything = everything and all(v["ok"] for v in supervision.values())
        return {
            "ok": everything and all(s["ok"] for s in sessions),
            "terminal_id": terminal_id,
            "security": terminal.security_mode,
            "transport": "tls" if terminal.host.ssl is not None else "tcp",
            "devices": devices,
            "card_reader": card_reader,
            "sessions": sessions,
            "reconciled": reconciled and not problems,
            "outcomes_as_expected": all(s["ok"] for s in sessions),
            "alarms": raised,
            "alarms_as_expected": alarms_ok,
            "ledger_problems": problems,
            "cash_handed_out": handed_out,
            "accounts": accounts,
            **extra,
            "notifications": notices,
            "joint_as_expected": joint_ok,
            **binding,  # payment-app bindings (sim/scenarios/binding_play.py)
            **supervision,  # "supervisor", "device_status" (sim/scenarios/supervisor_demo.py)
        }


async def play_joint(
    terminal: Terminal,
    customer: Customer,
    api_url: str,
    ca: Path | None,
    scenarios: Sequence[Scenario],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The joint-account sessions while the co-owners' phones decide, then binding a new
    co-owner on the phones (sim/scenarios/joint_demo.py); and the phones' errors."""
    if not scenarios:
        return [], []
    phones = CoOwnerPhones(api_url, ca, DECISIONS)
    phones.start()
    try:
        sessions = await run_sessions(terminal, customer, scenarios, seed_cards(DEMO_SEED))
    finally:
        phones.stop()
    sessions.append(await asyncio.to_thread(bind_jon, api_url, ca))
    return sessions, phones.errors


def location_source(terminal: Terminal) -> str:
    """What field 62 says for this terminal: gps with a receiver, else its site."""
    return "gps" if terminal.devices.gps is not None else "site"


def _expected_alarms(scenarios: Sequence[Scenario]) -> list[Scenario]:
    return [s for s in scenarios if s.card in DURESS_CARDS]


async def collect_alarms(
    url: str, scenarios: Sequence[Scenario], token: str, tls: ssl.SSLContext | None = None
) -> list[dict[str, Any]]:
    """What the alarm center holds once the host's outbox delivered (waits up to 15 s);
    read as the alarm desk does, with its operator ``token`` (over ``tls``, a client
    context, for an https center)."""
    expected = _expected_alarms(scenarios)
    deadline = time.monotonic() + 15
    alarms: list[dict[str, Any]] = []
    while True:
        alarms = await asyncio.to_thread(_get_alarms, url, token, tls)
        # complete: every alarm has its follow-up (the amount) and its snapshots
        done = [
            a
            for a in alarms
            if len(a.get("updates", [])) >= 1 + EVIDENCE_SNAPSHOTS
            and len(a["evidence"]) >= EVIDENCE_SNAPSHOTS
        ]
        if len(done) >= len(expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    return [
        {
            "alarm_id": a["alarm_id"],
            "terminal_id": a["terminal_id"],
            "terminal_ip": a["terminal_ip"],
            "time": a["time"],
            "location": a["location"],
            "masked_pan": a["masked_pan"],
            "account": a["account"],
            "amount_requested": max(
                [a["amount_requested"], *(u["amount_requested"] for u in a.get("updates", []))]
            ),
            "evidence": [
                {"content_type": e["content_type"], "bytes": e["bytes"]} for e in a["evidence"]
            ],
        }
        for a in alarms
    ]


def _get_alarms(url: str, token: str, tls: ssl.SSLContext | None) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{url}/alarms", headers={"Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),  # loopback
        urllib.request.HTTPSHandler(context=tls),
    )
    with opener.open(request, timeout=5) as response:
        return list(json.load(response)["alarms"])


def check_alarms(
    alarms: list[dict[str, Any]], scenarios: Sequence[Scenario], terminal_id: str, source: str
) -> bool:
    """Exactly one alarm per duress session, from this terminal, placed at its registered
    site with the terminal's own report (``source``) alongside, amount known,
    with the snapshots the host asked the terminal's camera for."""
    expected = _expected_alarms(scenarios)
    if len(alarms) != len(expected):
        return False
    for alarm, scenario in zip(alarms, expected, strict=True):
        location = alarm["location"]
        if alarm["terminal_id"] != terminal_id or location["source"] != "register":
            return False  # a fixed ATM's alarm goes to its registered site
        if location.get("reported", {}).get("source") != source:
            return False  # with what the terminal itself said, for the desk to compare
        if location["lat"] is None or alarm["amount_requested"] < scenario.expected_dispensed:
            return False
        if len(alarm["evidence"]) != EVIDENCE_SNAPSHOTS:  # the camera's quiet snapshots
            return False
    return True


def use_pcsc(stack: contextlib.ExitStack, terminal: Terminal, customer: Customer) -> None:
    """Swap the terminal's card reader for PC/SC through a real pcscd with virtual cards."""
    from sim.devices.pcsc_customer import PcscCustomer, WatchedDisplay
    from sim.devices.pcsc_env import PcscEnv
    from terminal.drivers.card_reader.pcsc import PcscCardReader

    env = stack.enter_context(PcscEnv())
    card_customer = PcscCustomer(env, DEMO_SEED)
    stack.callback(card_customer.close)
    terminal.devices.card_reader = PcscCardReader(
        "Virtual PCD 00 00", clock=terminal.clock, read_timeout=3.0
    )
    terminal.display = WatchedDisplay(terminal.display, card_customer)
    customer.reader = card_customer


def main(
    workdir: Path | None = None,
    security: str = "tdes",
    devices: str = "sim",
    card_reader: str = "sim",
    cardless_scenarios: Sequence[CardlessScenario] = CARDLESS_DEMO,
    progress: Progress | None = None,
) -> dict[str, Any]:
    return asyncio.run(
        run_demo(
            workdir,
            security=security,
            devices=devices,
            card_reader=card_reader,
            progress=progress,
        )
    )
