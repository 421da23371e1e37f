"""The simulator's commands: the bank host, its services, the phone, the demo, the soak.

Registered on the ``atm`` command by :mod:`atm.cli`; ``python -m sim`` runs them alone,
which is how the demo, the soak and the tests start service processes (no kiosk code is
needed to run a bank).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atm_common import cli, progress
from atm_common.errors import ConfigError, UsageError
from atm_common.files import private_dir, private_file, write_private
from atm_common.money import format_minor
from atm_common.progress import Progress
from sim.bank.cli import EXAMPLES as BANK_EXAMPLES
from sim.bank.cli import add_arguments as add_bank_arguments
from sim.payapp.cli import EXAMPLES as PAYAPP_EXAMPLES
from sim.phone.binding import EXAMPLES as BINDING_EXAMPLES
from sim.phone.cli import EXAMPLES as PHONE_EXAMPLES
from sim.phone.cli import add_arguments as add_phone_arguments
from sim.phone.joint_cli import EXAMPLES as JOINT_EXAMPLES

if TYPE_CHECKING:
    from sim.pki import Pki

DATA = Path(__file__).resolve().parent / "data"
DEMO_SEED_PATH = DATA / "demo-seed.toml"
DEFAULT_CONTROL = "var/sim-devices.sock"  # atm sim devices' control socket (kiosk_control)


def cmd_host(args: argparse.Namespace) -> int:
    from sim.pki import Pki

    if args.tls_dir is None and not args.plain:
        raise UsageError(
            "atm host: choose the ISO link's transport: --tls-dir DIR (mutual TLS, a CA made"
            " by `atm pki init DIR`) or --plain (plain TCP, for a lab)"
        )
    pki = Pki(Path(args.tls_dir)) if args.tls_dir is not None else None
    if args.worker is not None:  # a child of --workers: its parent holds the ledger lock
        return _serve_host(args, pki)
    with ledger_lock(args):
        return _serve_host(args, pki)


def ledger_lock(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """One ``atm host`` command per SQLite ledger: the lock is this process's, held while
    it serves (worker processes it starts share the ledger under it). The seed is checked
    first, so a refused seed leaves no file behind."""
    from atm_common.lockfile import exclusive
    from sim.host.public_keys import refuse_public_keys
    from sim.host.seed import read_keys

    refuse_public_keys(args.seed, *read_keys(Path(args.seed)), demo=args.demo)
    if "://" in args.db:  # a database server (not a file) keeps its own order
        return contextlib.nullcontext()
    db = Path(args.db)
    if db.is_dir():
        raise ConfigError(args.db, "", "is a folder; --db names the ledger's SQLite file")
    return exclusive(db, f"another host is already serving {args.db}; stop it or give another --db")


def _serve_host(args: argparse.Namespace, pki: Pki | None) -> int:
    import sqlite3

    from sim.host import storage
    from sim.host.app import build_host, serve

    database = _database(args.db)
    worker = _worker(args.worker)
    if args.workers < 1:
        raise ConfigError("--workers", str(args.workers), "must be 1 or more")
    if args.group_commit < 1:
        raise ConfigError("--group-commit", str(args.group_commit), "must be 1 or more")
    try:
        server = build_host(
            database,
            Path(args.seed),
            host=args.host,
            port=args.port,
            demo=args.demo,
            max_clock_skew=args.max_clock_skew,
            pki=pki,
            worker=worker,
            max_batch=args.group_commit,
            max_connections=args.max_connections,
        )
    except sqlite3.Error as exc:  # both engines raise these (sim/host/storage)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("--db", storage.redact(database), reason) from None
    if args.workers > 1 and worker is None:
        from sim.host.outbox.store import ensure_schema
        from sim.host.workers import run_workers

        ensure_schema(server.authoriser.conn)  # every table exists before a worker starts
        server.authoriser.conn.close()
        return run_workers(
            sys.argv[1:],
            args.workers,
            args.host,
            args.port,
            on_ready=lambda host, port: print(f"listening on {host}:{port}", flush=True),
            echo=lambda line: print(line, end="", flush=True),
        )
    first = worker is None or worker[0] == 0

    def ready(host: str, port: int) -> None:
        print(f"listening on {host}:{port}", flush=True)

    def api_ready(host: str, port: int) -> None:
        scheme = "https" if pki is not None else "http"
        print(f"api on {scheme}://{host}:{port}", flush=True)

    from sim.service_auth import load_token

    token = load_token(args.operator_token_file) if args.operator_token_file else None

    asyncio.run(
        serve(
            server,
            ready,
            alarm_center=args.alarm_center,
            carrier=args.carrier,
            host_key_file=Path(args.host_key_file) if args.host_key_file else None,
            db_path=database,
            api_port=args.api_port if first else None,
            api_host=args.api_host,
            sms_inbox=args.sms_inbox,
            on_api_ready=api_ready,
            outbox_max_delay=args.outbox_max_delay,
            pki=pki,
            payapp=args.payapp,
            payapp_key_file=Path(args.payapp_key_file) if args.payapp_key_file else None,
            binding_seconds=args.binding_seconds,
            background=first,
            operator_token=token,
        )
    )
    return 0


def _database(text: str) -> Path | str:
    """``--db``: an SQLite file, or a PostgreSQL URL (kept a string)."""
    from sim.host import storage

    if storage.is_postgres(text):
        return text
    if "://" in text:
        raise ConfigError(
            "--db", text.split("://")[0] + "://...", "not an SQLite file nor a postgresql:// URL"
        )
    return Path(text)


def _worker(text: str | None) -> tuple[int, int] | None:
    """``--worker I/N`` (set by ``--workers`` for its children): which one this is."""
    if text is None:
        return None
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ConfigError("--worker", text, "expected INDEX/COUNT, e.g. 0/2")
    return int(index), int(count)


def cmd_pki_init(args: argparse.Namespace) -> int:
    from sim.pki import SERVICES, make_pki

    directory = Path(args.dir)
    if (directory / "ca.pem").exists() and not args.force:
        raise ConfigError(str(directory), "", "already holds a CA (ca.pem); --force replaces it")
    terminals = args.terminal or ["ATM00001"]
    for terminal_id in terminals:
        if len(terminal_id) != 8:
            raise ConfigError("--terminal", "", f"{terminal_id!r}: a terminal id has 8 characters")
    pki = make_pki(directory, terminals)
    print(f"CA: {pki.ca}")
    for name in SERVICES:
        print(f"{name}: {pki.service(name).cert}")
    for terminal_id in terminals:
        print(f"terminal {terminal_id}: {pki.terminal(terminal_id).cert}")
    return 0


def cmd_phone(args: argparse.Namespace) -> int:
    from sim.phone.cli import run

    return run(args)


def cmd_bank(args: argparse.Namespace) -> int:
    from sim.bank.cli import run

    return run(args)


def _service_pki(args: argparse.Namespace, command: str) -> Pki | None:
    """The CA directory an HTTP service serves mutual TLS from (``--tls-dir``), None for
    ``--plain``; neither is refused: whether a bank link is encrypted is never a default."""
    from sim.pki import Pki

    if args.tls_dir is not None:
        return Pki(Path(args.tls_dir))
    if not args.plain:
        raise UsageError(
            f"atm {command}: give --tls-dir DIR (mutual TLS) or --plain (HTTP in clear)"
        )
    return None


def cmd_alarm_center(args: argparse.Namespace) -> int:
    from sim.alarm_center import format_alarms, format_conflicts, list_alarms, list_conflicts, serve

    if args.alarm_command == "conflicts":  # refused copies of an alarm id: look at each
        conflicts = list_conflicts(args.db)
        lines = format_conflicts(conflicts) or ["no conflicts"]
        print(json.dumps(conflicts, indent=2) if args.json else "\n".join(lines))
        return 0
    if args.alarm_command == "list":
        alarms = list_alarms(args.db)
        if args.json:
            print(json.dumps(alarms, indent=2))
        else:
            for line in format_alarms(alarms) or ["no alarms"]:
                print(line)
        return 0

    def ready(host: str, port: int) -> None:
        print(f"listening on {host}:{port}", flush=True)

    serve(
        args.db,
        args.host,
        args.port,
        ready,
        host_key_file=args.host_key_file,
        operator_token_file=args.operator_token_file,
        pki=_service_pki(args, "alarm-center"),
    )
    return 0


def cmd_carrier(args: argparse.Namespace) -> int:
    from sim.carrier import serve

    def ready(host: str, port: int) -> None:
        print(f"listening on {host}:{port}", flush=True)

    pki = _service_pki(args, "carrier")
    serve(args.table, args.host, args.port, ready, host_key_file=args.host_key_file, pki=pki)
    return 0


def cmd_payapp_server(args: argparse.Namespace) -> int:
    from sim.payapp.server import serve

    def ready(host: str, port: int) -> None:
        print(f"listening on {host}:{port}", flush=True)

    pki = _service_pki(args, "payapp-server")
    serve(
        args.db,
        args.host,
        args.port,
        ready,
        key_file=args.key_file,
        pki=pki,
        sms_inbox=args.sms_inbox,
    )
    return 0


def cmd_payapp(args: argparse.Namespace) -> int:
    from sim.payapp.cli import run

    return run(args)


def register_payapp(sub: Any) -> None:
    """``atm payapp-server`` (the payment company's server) and ``atm payapp`` (its app)."""
    server = sub.add_parser("payapp-server", help="a third-party payment app's server")
    server.add_argument("--db", default="var/payapp.db", help="its own SQLite database")
    server.add_argument(
        "--key-file", required=True, help="0600 file: the key the bank and it sign with"
    )
    server.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    server.add_argument("--port", type=int, default=8592, help="0 picks a free port")
    server.add_argument("--log", help="log to this file instead of stderr")
    server.add_argument("--sms-inbox", action="store_true", help="demo: serve the SMS inbox")
    add_service_tls_arguments(server, "payapp")
    server.set_defaults(func=cmd_payapp_server)
    app = sub.add_parser("payapp", help="the payment app: scan a binding QR code, bind, unbind")
    from sim.payapp.cli import add_arguments

    add_arguments(app)
    app.set_defaults(func=cmd_payapp)


def cmd_demo(args: argparse.Namespace) -> int:
    from sim.alarm_center.reading import describe_location
    from sim.scenarios.demo import main as demo_main

    if args.workdir:
        _fresh_workdir(Path(args.workdir))
    with Progress("demo", enabled=progress.wanted(json=args.json)) as bar:
        report = demo_main(
            Path(args.workdir) if args.workdir else None,
            security=args.security,
            devices=args.devices,
            card_reader=args.card_reader,
            progress=bar,
        )
    if args.json:
        print(json.dumps(report, indent=None if args.compact else 2))
    else:
        for s in report["sessions"]:
            mark = "ok " if s["ok"] else "BAD"
            print(
                f"[{mark}] {s['name']}: {s['outcome']} (expected {s['expected']}),"
                f" dispensed {format_minor(s['dispensed'])}"
            )
            print(f"      {' -> '.join(s['states'])}")
        print()
        for a in report["accounts"]:
            mark = "ok " if a["ok"] else "BAD"
            print(
                f"[{mark}] {a['account']:<16} {format_minor(a['opening']):>12} -> "
                f"{format_minor(a['closing']):>12}  change {format_minor(a['change']):>10}"
            )
        for problem in report["ledger_problems"]:
            print(f"[BAD] ledger: {problem}")
        print()
        for alarm in report["alarms"]:
            where = describe_location(alarm["location"])
            print(
                f"[alarm] {alarm['time']} terminal {alarm['terminal_id']} ({alarm['terminal_ip']})"
                f" at {where} card {alarm['masked_pan']}"
                f" requested {format_minor(alarm['amount_requested'])},"
                f" {len(alarm['evidence'])} snapshot(s)"
            )
        print(f"alarms as expected: {str(report['alarms_as_expected']).lower()}")
        _print_enterprise(report)
        notices = report.get("notifications", [])
        kinds = sorted({n["kind"] for n in notices})
        counts = ", ".join(f"{k} {sum(n['kind'] == k for n in notices)}" for k in kinds)
        print(
            f"joint-account notifications: {counts or 'none'};"
            f" as expected: {str(report.get('joint_as_expected', True)).lower()}"
        )
        print()
        for b in report.get("bindings", []):
            mark = "ok " if b["ok"] else "BAD"
            print(
                f"[{mark}] {b['name']}: {b['status']} (expected {b['expected']}),"
                f" account {b['account']}, app user {b['app_user']}, {b['path']}"
            )
        if "bindings_agree" in report:
            print(f"bank and payment app agree: {str(report['bindings_agree']).lower()}")
        _print_supervision(report)
        print(
            f"\nterminal {report['terminal_id']} ({report['security']});"
            f" cash handed out {format_minor(report['cash_handed_out'])};"
            f" reconciled: {str(report['reconciled']).lower()};"
            f" every outcome as expected: {str(report['outcomes_as_expected']).lower()}"
        )
    ok = report["reconciled"] and report["outcomes_as_expected"] and report["alarms_as_expected"]
    ok = ok and report.get("joint_as_expected", True)
    ok = ok and report.get("bindings_as_expected", True)
    ok = ok and all(report[k]["ok"] for k in ("supervisor", "device_status") if k in report)
    return 0 if ok and enterprise_ok(report) else 1


def _print_supervision(report: dict[str, Any]) -> None:
    """The supervisor section in words: the device status list at the host after each
    step, the paper running out, the replenishment's balancing (sim/scenarios/
    supervisor_demo.py)."""
    if "device_status" not in report:
        return
    print()
    status = report["device_status"]
    for step in status["timeline"]:
        needs = [f"{kind} {a} ({who})" for kind, (a, who) in step["devices"].items() if a != "none"]
        print(f"      at the host, {step['step']}: {', '.join(needs) or 'nothing to do'}")
    print(f"[{'ok ' if status['ok'] else 'BAD'}] device status list raised and cleared by itself")
    sup = report["supervisor"]
    paper = sup["paper"]
    print(
        f"[{'ok ' if all(paper.values()) else 'BAD'}] paper ran out during a receipt:"
        f" {str(paper['receipt_cut_short']).lower()}; next customer told before the"
        f" transaction: {str(paper['customer_told_before']).lower()}"
    )
    print(
        f"[{'ok ' if sup['technician_by_card'] else 'BAD'}] the jam: the engineer entered"
        f" supervisor mode by staff card + PIN (role given by the host: {sup['roles'][0]}),"
        f" cleared it, left; the replenisher entered by key ({sup['roles'][1]})"
    )
    ex = sup["exchange"]
    print(
        f"[{'ok ' if sup['ok'] else 'BAD'}] replenishment: host expected"
        f" {format_minor(ex['host_expected'])}, found {format_minor(ex['found'])},"
        f" difference {format_minor(ex['difference'])}"
        f" (expected {format_minor(sup['difference_expected'])}), new load"
        f" {format_minor(ex['loaded'])}; report {sup['report']['text']} and .png;"
        f" {sup['receipts_printed']} receipts printed"
    )


def enterprise_ok(report: dict[str, Any]) -> bool:
    """Every enterprise view equal to the table, every refusal refused, the change in force."""
    if "enterprise" not in report:
        return True
    return (
        all(v["ok"] for v in report["enterprise"])
        and all(r["ok"] for r in report["enterprise_refusals"])
        and bool(report["enterprise_change"]["ok"])
    )


def _print_enterprise(report: dict[str, Any]) -> None:
    if "enterprise" not in report:
        return
    print()
    for v in report["enterprise"]:
        mark = "ok " if v["ok"] else "BAD"
        print(
            f"[{mark}] {v['user']} as {v['role']} in {v['department']}:"
            f" operations {', '.join(v['operations'])}; accounts {', '.join(v['accounts'])};"
            f" ATM menu {', '.join(v['atm_menu'])}"
        )
    for r in report["enterprise_refusals"]:
        mark = "ok " if r["ok"] else "BAD"
        print(f"[{mark}] refused ({r['status']}): {r['attempt']}")
    c = report["enterprise_change"]
    mark = "ok " if c["ok"] else "BAD"
    print(
        f"[{mark}] table change {c['change']}: made by {c['maker']}, approved by {c['checker']};"
        f" the same session's operations {', '.join(c['operations_before'])}"
        f" -> {', '.join(c['operations_after'])}"
    )


def _fresh_workdir(workdir: Path) -> None:
    """The demo's checks compare against a new bank: an earlier run's files would fail
    them (a second run finds its cards already used), so a used folder is refused."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(str(workdir), "", "is a file; --workdir names a folder")
    old = sorted(p.name for p in workdir.iterdir()) if workdir.is_dir() else []
    if old:
        shown = ", ".join(old[:4]) + (", ..." if len(old) > 4 else "")
        raise ConfigError(
            str(workdir),
            "",
            f"holds an earlier run ({shown}); the demo needs a new bank:"
            " give an empty or new folder, or delete this one first",
        )


def cmd_sim_devices(args: argparse.Namespace) -> int:
    import contextlib
    import signal
    import threading

    from sim.devices.kiosk_control import KioskHands, control_socket
    from sim.devices.launcher import PCSC_READER, SIM_READER, emulators_on_ptys, kiosk_toml
    from sim.devices.pcsc_env import PcscEnv, PcscEnvError

    if args.config_out and Path(args.config_out).is_dir():
        raise ConfigError(args.config_out, "", "is a folder; --config-out names the file to write")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.ExitStack() as stack:
        emulated = stack.enter_context(emulators_on_ptys(Path(args.seed), args.terminal))
        emulated.dispenser.hand_operated = True  # a person takes the cash: atm sim cash take
        emulated.printer.out_dir = Path(args.printer_out)  # each receipt as .txt and .png
        print(f"printer output: {args.printer_out}", flush=True)
        for name, path in emulated.paths.items():
            print(f"{name}: {path}", flush=True)
        pcsc = None
        if args.card_reader == "pcsc":
            try:  # pcscd + vpcd, stopped by PID at the end
                pcsc = stack.enter_context(PcscEnv())
            except PcscEnvError as exc:
                raise PcscEnvError(
                    f"the virtual card reader cannot start: {exc} (without pcscd:"
                    " --card-reader sim, and play the customer with `atm run --sim`)"
                ) from None
            print(f"card_reader: {PCSC_READER['reader']} (pcscd)", flush=True)
        hands = KioskHands(emulated, pcsc, Path(args.seed))
        stack.callback(hands.close)
        control = stack.enter_context(control_socket(Path(args.control), hands))
        print(f"control: {control} (atm sim card|pinpad|cash ... --control {control})", flush=True)
        if args.config_out:
            # the config names the PIN pad's keys: written private, like every generated file
            tls_dir = None if args.plain else Path(args.tls_dir)
            reader = PCSC_READER if pcsc is not None else SIM_READER
            toml = kiosk_toml(
                emulated, args.terminal, args.host_port, tls_dir=tls_dir, card_reader=reader
            )
            write_private(args.config_out, toml)
            print(f"config: {args.config_out}", flush=True)
        stop.wait(args.seconds)
    return 0


def cmd_sim_hands(args: argparse.Namespace) -> int:
    """``atm sim card|pinpad|cash``: one request to a running ``atm sim devices``."""
    from sim.devices.kiosk_control import ask

    request: dict[str, Any] = {"do": f"{args.sim_command}_{args.action}"}
    if args.sim_command == "card":
        if args.action in ("insert", "swap") and not args.pan:
            raise ConfigError(f"atm sim card {args.action}", "--pan", "is required")
        request |= {"pan": args.pan or "", "mode": args.mode}
    elif args.sim_command == "pinpad":
        request["keys"] = args.keys
    print(ask(Path(args.control), request))
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    from sim.soak.harness import FAULTS, run_soak

    faults: tuple[str, ...]
    if args.faults == "all":
        faults = FAULTS
    elif args.faults == "none":
        faults = ()
    else:
        faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    # the run's own log: thousands of injected faults would bury a console
    workdir = private_dir(args.workdir)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.FileHandler(private_file(workdir / "soak.log"), mode="w"))
    bar = Progress("soak", args.transactions, enabled=progress.wanted(json=args.json))
    try:
        with bar:
            report = run_soak(
                Path(args.workdir),
                args.transactions,
                args.seed,
                faults,
                fault_rate=args.fault_rate,
                progress=bar,
                db=args.db,
                host_workers=args.host_workers,
            )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    clean = not (report.discrepancies or report.duplicate_postings)
    clean = clean and not (report.saf_pending or report.exception_queue)
    if args.json:  # everything the plain output says, as one object
        print(json.dumps({**dataclasses.asdict(report), **report.summary()}))
    else:
        print(f"{report.transactions} transactions, seed {report.seed}, {report.elapsed_s} s")
        print(f"faults: {report.faults}")
        print(f"outcomes: {report.outcomes}")
        print(f"terminal restarts {report.terminal_restarts}, host restarts {report.host_restarts}")
        print(f"cash handed out {format_minor(report.cash_handed_out)}")
        print(
            f"duress sessions {report.duress_sessions}; silent alarm outbox entries"
            f" {report.alarm_entries} (all must be delivered)"
        )
        for problem in report.problems:
            print(f"PROBLEM: {problem}")
        print(
            f"discrepancies {report.discrepancies}, duplicate postings {report.duplicate_postings},"
            f" SAF pending {report.saf_pending}, exception queue {report.exception_queue}"
        )
    return 0 if clean else 1


def add_service_tls_arguments(parser: argparse.ArgumentParser, certificate: str) -> None:
    """``--tls-dir DIR`` / ``--plain`` of an HTTP service (one of them is required)."""
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--tls-dir",
        help=f"CA directory (atm pki init): serve HTTPS with its {certificate} certificate,"
        " a client certificate from that CA required (mutual TLS)",
    )
    tls.add_argument("--plain", action="store_true", help="serve plain HTTP (tests, a lab)")


def cmd_host_status(args: argparse.Namespace) -> int:
    from sim.host.supervision.fleet import host_status

    print(host_status(_database(args.db), as_json=args.json))
    return 0


def cmd_joint_unlock(args: argparse.Namespace) -> int:
    from sim.host.joint.admin import unlock

    print(unlock(_database(args.db), args.account))
    return 0


EXAMPLES = {
    "host": """\
atm pki init var/pki && atm host --demo --tls-dir var/pki     # the demo bank over TLS
atm host --demo --plain --port 0 --api-port 8584 --sms-inbox  # a lab, phone API too
atm host --tls-dir var/pki --seed bank.toml --db var/bank.db
atm host --tls-dir var/pki --api-port 8584 --operator-token-file var/operator.token
atm host --tls-dir var/pki --workers 2 --db 'postgresql://atm@/atm?host=/run/atm-pg&port=5433'""",
    "alarm-center": """\
atm alarm-center --tls-dir var/pki --host-key-file var/host.key
atm alarm-center list --db var/alarms.db --json""",
    "carrier": "atm carrier --tls-dir var/pki --host-key-file var/host.key --table cells.toml",
    "phone": """\
atm phone --ca var/pki/ca.pem --phone +4915100000006 request
atm phone --url http://127.0.0.1:8584 route 52.52 13.405 10000""",
    "demo": """\
atm demo
atm demo --security aes-dukpt --json --workdir var/demo-run""",
    "soak": """\
atm soak --transactions 200 --seed 7
atm soak --transactions 2000 --faults host_killed,mac_error --json""",
    "pki": "atm pki init var/pki --terminal ATM00001 --terminal ATM00002",
    "pki init": "atm pki init var/pki --terminal ATM00001 --terminal ATM00002",
    **PHONE_EXAMPLES,
    **JOINT_EXAMPLES,
    **BINDING_EXAMPLES,
    **PAYAPP_EXAMPLES,
    **BANK_EXAMPLES,
    "joint-unlock": "atm joint-unlock --db var/host.db 1000000009",
    "host status": """\
atm host status --db var/host.db --json
atm host status --db 'postgresql://atm@/atm?host=/run/atm-pg&port=5433'""",
    "sim": "atm sim devices --config-out kiosk.toml --plain",
    "sim card": """\
atm sim card insert --pan 4761739001010010
atm sim card swap --pan 5413330089010012
atm sim card remove""",
    "sim pinpad": "atm sim pinpad press 1234 enter",
    "sim cash": "atm sim cash take",
    "sim devices": """\
atm sim devices --config-out kiosk.toml --tls-dir var/pki
atm sim devices --config-out kiosk.toml --plain --seconds 600
atm sim devices --config-out kiosk.toml --plain --printer-out var/printer""",
}


def register(sub: Any) -> None:
    """Add the simulator's subcommands to the ``atm`` subparsers ``sub``."""
    host = sub.add_parser("host", help="run the bank host simulator (ISO 8583 over TLS or TCP)")
    transport = host.add_mutually_exclusive_group()
    transport.add_argument(
        "--tls-dir",
        help="CA directory (atm pki init DIR): serve ISO 8583 over TLS, client certificates"
        " required, their common name bound to field 41",
    )
    transport.add_argument(
        "--plain", action="store_true", help="serve ISO 8583 over plain TCP (lab, tshark)"
    )
    host.add_argument(
        "--db",
        default="var/host.db",
        help="the ledger: an SQLite file (default %(default)s), or PostgreSQL as a URL:"
        " postgresql://USER@/DBNAME?host=/socket/dir&port=5432 or"
        " postgresql://USER@HOST:PORT/DBNAME (a password is better in ~/.pgpass or"
        " PGPASSWORD than in the URL; it is never logged)",
    )
    host.add_argument(
        "--workers",
        type=int,
        default=1,
        help="host processes sharing the port (SO_REUSEPORT) and the ledger: one per core"
        " (default %(default)s)",
    )
    host.add_argument(
        "--group-commit",
        type=int,
        default=256,
        metavar="N",
        help="requests arriving together share one commit, at most N of them (1: a commit"
        " per request) (default %(default)s)",
    )
    host.add_argument(
        "--max-connections",
        type=int,
        default=512,
        help="open connections each host process accepts; one more is closed at once"
        " (default %(default)s)",
    )
    host.add_argument("--worker", help=argparse.SUPPRESS)  # I/N, set for --workers' children
    host.add_argument(
        "--seed",
        default=str(DEMO_SEED_PATH),
        help="TOML seed: keys, terminals, people, accounts, cards (default: the demo bank,"
        " which needs --demo)",
    )
    host.add_argument(
        "--demo",
        action="store_true",
        help="allow a seed with the published demo keys (demo, tests, benchmarks only)",
    )
    host.add_argument(
        "--max-clock-skew",
        type=float,
        default=300.0,
        help="seconds field 7 of a network message (sign-on, echo, key exchange) may differ"
        " from the host's clock; 0 turns the comparison off (simulated-time runs)."
        " default: %(default)s",
    )
    host.add_argument("--host", default="127.0.0.1", help="the ISO 8583 port's address")
    host.add_argument(
        "--port", type=cli.port_number, default=8583, help="ISO 8583 port; 0 picks a free one"
    )
    host.add_argument("--log", help="log to this file instead of stderr")
    host.add_argument(
        "--alarm-center",
        help="alarm center URL (https://127.0.0.1:PORT; http:// for a --plain center)",
    )
    host.add_argument("--carrier", help="carrier location service URL, for terminals with no fix")
    host.add_argument(
        "--host-key-file", help="0600 file: the key that signs requests to alarm center, carrier"
    )
    host.add_argument(
        "--outbox-max-delay",
        type=float,
        default=30.0,
        help="longest wait between delivery attempts of an alarm or SMS (seconds)",
    )
    host.add_argument(
        "--api-port",
        type=cli.port_number,
        default=None,
        help="serve the phone API (cardless withdrawal, ATM routing); 0 picks a free port",
    )
    host.add_argument("--api-host", default="127.0.0.1", help="the phone API's address")
    host.add_argument("--sms-inbox", action="store_true", help="demo: serve the SMS inbox")
    host.add_argument(
        "--operator-token-file",
        help="0600 file: the bank operator's bearer token for GET /terminals (needs --api-port)",
    )
    host.add_argument("--payapp", help="payment app server URL: account binding (needs --api-port)")
    host.add_argument("--payapp-key-file", help="0600 file: the key shared with the payment app")
    host.add_argument(
        "--binding-seconds", type=float, help="how long a binding address lives (default 300)"
    )
    host.set_defaults(func=cmd_host)
    hsub = host.add_subparsers(dest="host_command", metavar="{status}")
    hstatus = hsub.add_parser(
        "status", help="every terminal: mode, devices' attention, cash, last heard (read-only)"
    )
    hstatus.add_argument(
        "--db", default="var/host.db", help="the host's SQLite file or postgresql:// URL"
    )
    hstatus.add_argument("--json", action="store_true", help="print JSON")
    hstatus.set_defaults(func=cmd_host_status)
    register_payapp(sub)

    alarm = sub.add_parser(
        "alarm-center", help="the bank's alarm center (HTTPS), or list its alarms"
    )
    alarm.add_argument(
        "alarm_command",
        nargs="?",
        choices=("serve", "list", "conflicts"),
        default="serve",
        help="serve the center, list its alarms, or list refused conflicting copies",
    )
    alarm.add_argument("--host-key-file", help="0600 file: the key the host signs alarms with")
    alarm.add_argument("--operator-token-file", help="0600 file: bearer token for GET /alarms")
    alarm.add_argument("--db", default="var/alarms.db", help="the alarms' SQLite file")
    alarm.add_argument("--host", default="127.0.0.1", help="address to serve on")
    alarm.add_argument(
        "--port", type=cli.port_number, default=8590, help="port; 0 picks a free one"
    )
    alarm.add_argument("--json", action="store_true", help="list/conflicts as JSON")
    alarm.add_argument("--log", help="log to this file instead of stderr")
    add_service_tls_arguments(alarm, "alarm-center")
    alarm.set_defaults(func=cmd_alarm_center)

    carrier = sub.add_parser("carrier", help="the mobile carrier's network location service")
    carrier.add_argument(
        "--table",
        help="TOML/JSON table of terminal locations (default: a made-up place per terminal,"
        " for tests)",
    )
    carrier.add_argument("--host-key-file", required=True, help="0600 file: the host's signing key")
    carrier.add_argument("--host", default="127.0.0.1", help="address to serve on")
    carrier.add_argument(
        "--port", type=cli.port_number, default=8591, help="port; 0 picks a free one"
    )
    carrier.add_argument("--log", help="log to this file instead of stderr")
    add_service_tls_arguments(carrier, "carrier")
    carrier.set_defaults(func=cmd_carrier)

    phone = sub.add_parser(
        "phone", help="the customer's phone: cardless withdrawal against atm host --api-port"
    )
    add_phone_arguments(phone)
    phone.set_defaults(func=cmd_phone)

    bank = sub.add_parser("bank", help="online banking clients: enterprise users by role")
    add_bank_arguments(bank)
    bank.set_defaults(func=cmd_bank)

    demo = sub.add_parser("demo", help="run scripted sessions against a real host process")
    demo.add_argument("--json", action="store_true", help="print one JSON report")
    demo.add_argument("--compact", action="store_true", help="JSON on one line")
    demo.add_argument("--workdir", help="keep the run's files here (default: a temp dir)")
    demo.add_argument(
        "--devices",
        choices=("sim", "pty"),
        default="sim",
        help="in-process simulated devices, or dispenser/PIN pad/GPS emulators on real ptys",
    )
    demo.add_argument(
        "--card-reader",
        choices=("sim", "pcsc"),
        default="sim",
        help="in-process card reader, or virtual EMV cards through a real pcscd (root)",
    )
    demo.add_argument(
        "--security",
        choices=("tdes", "aes-dukpt"),
        default="tdes",
        help="terminal key set: TDES master/session keys (PIN format 0) or AES DUKPT (format 4)",
    )
    demo.set_defaults(func=cmd_demo)

    soak = sub.add_parser("soak", help="chaos soak: many sessions with faults, then money checks")
    soak.add_argument(
        "--transactions", type=cli.positive_int, default=2000, help="customer sessions to run"
    )
    soak.add_argument(
        "--seed", type=int, default=1, help="random seed: the same seed replays the same run"
    )
    soak.add_argument("--faults", default="all", help="all, none, or a comma-separated list")
    soak.add_argument(
        "--fault-rate", type=cli.fraction, default=0.3, help="share of sessions with a fault"
    )
    soak.add_argument("--workdir", default="var/soak", help="host db, journal, logs of the run")
    soak.add_argument("--json", action="store_true", help="print one JSON report")
    soak.add_argument(
        "--db", help="the host's ledger: a fresh PostgreSQL database URL (default: SQLite)"
    )
    soak.add_argument(
        "--host-workers", type=int, default=1, help="host processes (atm host --workers)"
    )
    soak.set_defaults(func=cmd_soak)

    joint = sub.add_parser(
        "joint-unlock", help="the bank unlocks a joint account (docs/joint-accounts.md)"
    )
    joint.add_argument("--db", default="var/host.db", help="the host's database")
    joint.add_argument("account", help="the locked joint account's number")
    joint.set_defaults(func=cmd_joint_unlock)

    pki = sub.add_parser("pki", help="a small CA for the demo, the soak and a lab")
    psub = pki.add_subparsers(dest="pki_command", required=True)
    init = psub.add_parser(
        "init", help="make a CA, the services' certificates and one per terminal in DIR"
    )
    init.add_argument("dir", help="directory to create (0700; keys 0600)")
    init.add_argument(
        "--terminal",
        action="append",
        help="a terminal id to issue a client certificate for (repeat; default ATM00001)",
    )
    init.add_argument("--force", action="store_true", help="replace a CA already in DIR")
    init.set_defaults(func=cmd_pki_init)

    simp = sub.add_parser("sim", help="simulators")
    ssub = simp.add_subparsers(dest="sim_command", required=True)
    devices = ssub.add_parser(
        "devices",
        help="dispenser, PIN pad and GPS emulators on ptys, a virtual PC/SC card reader",
    )
    devices.add_argument("--seed", default=str(DEMO_SEED_PATH), help="host seed (for PIN pad keys)")
    devices.add_argument("--terminal", default="ATM00001", help="whose keys the PIN pad holds")
    devices.add_argument(
        "--host-port",
        type=cli.port_number,
        default=8583,
        help="the host's ISO 8583 port the written config points at",
    )
    devices.add_argument("--config-out", help="write a terminal config using these devices")
    devices.add_argument(
        "--printer-out",
        default="var/printer",
        help="where the printer emulator saves each receipt (.txt and .png). default: %(default)s",
    )
    link = devices.add_mutually_exclusive_group()
    link.add_argument(
        "--tls-dir",
        default="var/pki",
        help="the config's host link: mutual TLS with this CA directory's certificate for"
        " --terminal (atm pki init DIR --terminal ID); default: %(default)s",
    )
    link.add_argument("--plain", action="store_true", help="the config's host link: plain TCP")
    devices.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    devices.add_argument(
        "--card-reader",
        choices=("pcsc", "sim"),
        default="pcsc",
        help="pcsc: a virtual PC/SC reader through a real pcscd (root; cards with `atm sim"
        " card`); sim: the terminal's in-process reader. default: %(default)s",
    )
    devices.add_argument(
        "--control", default=DEFAULT_CONTROL, help="the control socket (default: %(default)s)"
    )
    devices.set_defaults(func=cmd_sim_devices)

    card = ssub.add_parser(
        "card", help="the person at `atm sim devices`: a card into the reader, out, or swapped"
    )
    card.add_argument("action", choices=("insert", "remove", "swap"), help="what to do with it")
    card.add_argument("--pan", help="a card of the seed (insert, swap)")
    card.add_argument(
        "--mode", default="normal", help="a broken card: mute, bad_tlv, unknown_aid, expired ..."
    )
    pinpad = ssub.add_parser(
        "pinpad", help="the person at `atm sim devices`: press keys on the PIN pad"
    )
    pinpad.add_argument("action", choices=("press",), help="press the keys that follow")
    pinpad.add_argument("keys", nargs="+", help="digits, enter, cancel, f1 .. f8 (1234 enter)")
    cash = ssub.add_parser("cash", help="the person at `atm sim devices`: take the cash")
    cash.add_argument("action", choices=("take",), help="take the notes presented")
    for hands in (card, pinpad, cash):
        hands.add_argument(
            "--control", default=DEFAULT_CONTROL, help="atm sim devices' control socket"
        )
        hands.set_defaults(func=cmd_sim_hands)


def build_parser() -> argparse.ArgumentParser:
    """The simulator's commands alone (``python -m sim``), as ``atm`` spells them."""
    parser = argparse.ArgumentParser(prog="atm", description=__doc__)
    cli.add_logging_options(parser)
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    cli.polish(parser, EXAMPLES)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv)
