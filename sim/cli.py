"""The simulator's commands: the bank host, its services, the phone, the demo, the soak.

Registered on the ``atm`` command by :mod:`atm.cli`; ``python -m sim`` runs them alone,
which is how the demo, the soak and the tests start service processes (no kiosk code is
needed to run a bank).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atm_common import cli
from atm_common.errors import ConfigError
from atm_common.files import private_dir, private_file, write_private
from atm_common.money import format_minor
from sim.phone.cli import add_arguments as add_phone_arguments

if TYPE_CHECKING:
    from sim.pki import Pki

DATA = Path(__file__).resolve().parent / "data"
DEMO_SEED_PATH = DATA / "demo-seed.toml"


def cmd_host(args: argparse.Namespace) -> int:
    import sqlite3

    from sim.host import storage
    from sim.host.app import build_host, serve
    from sim.pki import Pki

    if args.tls_dir is None and not args.plain:
        raise ConfigError(
            "atm host",
            "",
            "choose the ISO link's transport: --tls-dir DIR (mutual TLS, a CA made by"
            " `atm pki init DIR`) or --plain (plain TCP, for a lab)",
        )
    pki = Pki(Path(args.tls_dir)) if args.tls_dir is not None else None
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
        return run_workers(sys.argv[1:], args.workers, args.host, args.port)
    first = worker is None or worker[0] == 0

    def ready(host: str, port: int) -> None:
        print(f"listening on {host}:{port}", flush=True)

    def api_ready(host: str, port: int) -> None:
        scheme = "https" if pki is not None else "http"
        print(f"api on {scheme}://{host}:{port}", flush=True)

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
            background=first,
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


def _service_pki(args: argparse.Namespace, command: str) -> Pki | None:
    """The CA directory an HTTP service serves mutual TLS from (``--tls-dir``), None for
    ``--plain``; neither is refused: whether a bank link is encrypted is never a default."""
    from sim.pki import Pki

    if args.tls_dir is not None:
        return Pki(Path(args.tls_dir))
    if not args.plain:
        raise ConfigError(
            f"atm {command}", "", "give --tls-dir DIR (mutual TLS) or --plain (HTTP in clear)"
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


def cmd_demo(args: argparse.Namespace) -> int:
    from sim.scenarios.demo import main as demo_main

    report = demo_main(
        Path(args.workdir) if args.workdir else None,
        security=args.security,
        devices=args.devices,
        card_reader=args.card_reader,
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
            where = alarm["location"]
            print(
                f"[alarm] {alarm['time']} terminal {alarm['terminal_id']} ({alarm['terminal_ip']})"
                f" at {where['lat']},{where['lon']} ({where['source']}) card {alarm['masked_pan']}"
                f" requested {format_minor(alarm['amount_requested'])},"
                f" {len(alarm['evidence'])} snapshot(s)"
            )
        print(f"alarms as expected: {str(report['alarms_as_expected']).lower()}")
        print(
            f"\nterminal {report['terminal_id']} ({report['security']});"
            f" cash handed out {format_minor(report['cash_handed_out'])};"
            f" reconciled: {str(report['reconciled']).lower()};"
            f" every outcome as expected: {str(report['outcomes_as_expected']).lower()}"
        )
    ok = report["reconciled"] and report["outcomes_as_expected"] and report["alarms_as_expected"]
    return 0 if ok else 1


def cmd_sim_devices(args: argparse.Namespace) -> int:
    import signal
    import threading

    from sim.devices.launcher import emulators_on_ptys, kiosk_toml

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with emulators_on_ptys(Path(args.seed), args.terminal) as emulated:
        for name, path in emulated.paths.items():
            print(f"{name}: {path}", flush=True)
        if args.config_out:
            # the config names the PIN pad's keys: written private, like every generated file
            tls_dir = None if args.plain else Path(args.tls_dir)
            toml = kiosk_toml(emulated, args.terminal, args.host_port, tls_dir=tls_dir)
            write_private(args.config_out, toml)
            print(f"config: {args.config_out}", flush=True)
        stop.wait(args.seconds)
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
    try:
        report = run_soak(
            Path(args.workdir),
            args.transactions,
            args.seed,
            faults,
            fault_rate=args.fault_rate,
            db=args.db,
            host_workers=args.host_workers,
        )
    except ValueError as exc:
        print(f"atm soak: error: {exc}", file=sys.stderr)
        return 2
    clean = not (report.discrepancies or report.duplicate_postings)
    clean = clean and not (report.saf_pending or report.exception_queue)
    if args.json:
        print(json.dumps(report.summary()))
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
    host.add_argument("--host", default="127.0.0.1")
    host.add_argument("--port", type=int, default=8583, help="0 picks a free port")
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
        type=int,
        default=None,
        help="serve the phone API (cardless withdrawal, ATM routing); 0 picks a free port",
    )
    host.add_argument("--api-host", default="127.0.0.1", help="the phone API's address")
    host.add_argument("--sms-inbox", action="store_true", help="demo: serve the SMS inbox")
    host.set_defaults(func=cmd_host)

    alarm = sub.add_parser(
        "alarm-center", help="the bank's alarm center (HTTPS), or list its alarms"
    )
    alarm.add_argument(
        "alarm_command", nargs="?", choices=("serve", "list", "conflicts"), default="serve"
    )
    alarm.add_argument("--host-key-file", help="0600 file: the key the host signs alarms with")
    alarm.add_argument("--operator-token-file", help="0600 file: bearer token for GET /alarms")
    alarm.add_argument("--db", default="var/alarms.db")
    alarm.add_argument("--host", default="127.0.0.1")
    alarm.add_argument("--port", type=int, default=8590, help="0 picks a free port")
    alarm.add_argument("--json", action="store_true")
    alarm.add_argument("--log", help="log to this file instead of stderr")
    add_service_tls_arguments(alarm, "alarm-center")
    alarm.set_defaults(func=cmd_alarm_center)

    carrier = sub.add_parser("carrier", help="the mobile carrier's network location service")
    carrier.add_argument("--table", help="TOML/JSON table of terminal locations")
    carrier.add_argument("--host-key-file", required=True, help="0600 file: the host's signing key")
    carrier.add_argument("--host", default="127.0.0.1")
    carrier.add_argument("--port", type=int, default=8591, help="0 picks a free port")
    carrier.add_argument("--log", help="log to this file instead of stderr")
    add_service_tls_arguments(carrier, "carrier")
    carrier.set_defaults(func=cmd_carrier)

    phone = sub.add_parser(
        "phone", help="the customer's phone: cardless withdrawal against atm host --api-port"
    )
    add_phone_arguments(phone)
    phone.set_defaults(func=cmd_phone)

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
    soak.add_argument("--transactions", type=int, default=2000)
    soak.add_argument("--seed", type=int, default=1)
    soak.add_argument("--faults", default="all", help="all, none, or a comma-separated list")
    soak.add_argument(
        "--fault-rate", type=float, default=0.3, help="share of sessions with a fault"
    )
    soak.add_argument("--workdir", default="var/soak", help="host db, journal, logs of the run")
    soak.add_argument("--json", action="store_true")
    soak.add_argument(
        "--db", help="the host's ledger: a fresh PostgreSQL database URL (default: SQLite)"
    )
    soak.add_argument(
        "--host-workers", type=int, default=1, help="host processes (atm host --workers)"
    )
    soak.set_defaults(func=cmd_soak)

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
    devices = ssub.add_parser("devices", help="dispenser, PIN pad and GPS emulators on ptys")
    devices.add_argument("--seed", default=str(DEMO_SEED_PATH), help="host seed (for PIN pad keys)")
    devices.add_argument("--terminal", default="ATM00001", help="whose keys the PIN pad holds")
    devices.add_argument("--host-port", type=int, default=8583)
    devices.add_argument("--config-out", help="write a terminal config using these devices")
    link = devices.add_mutually_exclusive_group()
    link.add_argument(
        "--tls-dir",
        default="var/pki",
        help="the config's host link: mutual TLS with this CA directory's certificate for"
        " --terminal (atm pki init DIR --terminal ID); default: %(default)s",
    )
    link.add_argument("--plain", action="store_true", help="the config's host link: plain TCP")
    devices.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    devices.set_defaults(func=cmd_sim_devices)


def build_parser() -> argparse.ArgumentParser:
    """The simulator's commands alone (``python -m sim``), as ``atm`` spells them."""
    parser = argparse.ArgumentParser(prog="atm", description=__doc__)
    cli.add_logging_options(parser)
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv)
