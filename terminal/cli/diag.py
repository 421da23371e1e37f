"""``atm diag ...``: field-engineer diagnostics, each device through the terminal's config.

Human output by default, ``--json`` for tools. A device that cannot be reached is a
finding: its report (``status: offline`` and the ``error``) is printed in either mode and
the command exits 4 (:attr:`ExitCode.DEVICE`), the same for every device command.
A terminal running on the same config (``atm run``) holds its devices: diag says so and
keeps off them unless ``--force``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import stat
import sys
from pathlib import Path
from typing import Any

from atm_common.errors import AtmError, ConfigError, ExitCode, ServiceUnavailable, UsageError
from terminal.diag.pinpad import MAX_COMPONENTS, MIN_COMPONENTS

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "data" / "sim-terminal.toml")

DIAG_EXAMPLES = {
    "diag": "atm diag status --config kiosk.toml",
    "diag status": """\
atm diag status                      # the devices of the default (simulated) terminal
atm diag status --config kiosk.toml --json""",
    "diag dispenser": "atm diag dispenser --config kiosk.toml --test",
    "diag pinpad": "atm diag pinpad --config kiosk.toml --json",
    "diag pinpad keys": "atm diag pinpad --config kiosk.toml keys load --kcv 08D7B4",
    "diag pinpad keys load": """\
atm diag pinpad --config kiosk.toml keys load --kcv 08D7B4    # each custodian types a part
atm diag pinpad --config kiosk.toml keys load --kcv 08D7B4 --components-file parts.txt""",
    "diag gps": """\
atm diag gps --config kiosk.toml
atm diag gps --replay tests/data/nmea/sample.nmea --json""",
    "diag camera": """\
atm diag camera --snapshot frame.jpg
atm diag camera --verify --enrolled a.jpg --probe b.jpg""",
    "diag card-reader": "atm diag card-reader --reader 'Virtual PCD' --json",
    "diag saf": """\
atm diag saf                         # the queue of the default config's terminal
atm diag saf --config kiosk.toml --retry""",
}


def _text(value: Any) -> str:
    """A value as a person reads it: no Python reprs (``None``, ``{'TMK': ...}``)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "-"
    return str(value)


def _emit(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{key}:")
            for row in value:
                print("  " + "  ".join(f"{k}={_text(v)}" for k, v in row.items()))
        else:
            print(f"{key}: {_text(value)}")


def _offline(kind: str, exc: AtmError, as_json: bool) -> int:
    """A device that cannot be opened: its report in either mode, exit 4."""
    _emit({"device": kind, "status": "offline", "error": str(exc)}, as_json)
    if not as_json:
        print(f"atm: error: {exc}", file=sys.stderr)
    return int(ExitCode.DEVICE)


def _config(path: str) -> Any:
    from terminal.config import load_config

    return load_config(Path(path))


def journal_path(args: argparse.Namespace) -> Path:
    """``--journal`` when given, else the journal the config's terminal writes."""
    return Path(args.journal) if args.journal else Path(_config(args.config).journal)


def _keep_off_a_running_terminal(config: Any, force: bool) -> None:
    """A terminal running on this config (its journal lock held) owns the devices."""
    from atm_common.lockfile import holder

    pid = holder(Path(config.journal))
    if pid is None or force:
        return
    raise ServiceUnavailable(
        f"a terminal (atm run{f', pid {pid}' if pid else ''}) is running on {config.source}"
        " and holds its devices; stop it first, or --force to open them anyway"
    )


def _open(args: argparse.Namespace, kind: str) -> Any:
    from atm_common.clock import SystemClock
    from terminal.drivers.base import create_device

    config = _config(args.config)
    section = config.devices.get(kind)
    if section is None:
        raise ConfigError(config.source, f"devices.{kind}", "not configured")
    _keep_off_a_running_terminal(config, args.force)
    return create_device(kind, section.backend, clock=SystemClock(), **dict(section.options))


def cmd_status(args: argparse.Namespace) -> int:
    from terminal.config import load_config
    from terminal.diag.status import format_report, status_report

    report = status_report(load_config(Path(args.config)))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1


STATUS_EPILOG = """\
Every device configured in the terminal's config is opened and listed with its kind,
backend, state (ok, degraded, fault, offline; error when its config section cannot
build it), what it reports about itself (model, firmware, serial number, port ...), its
counters and its last error. A device that cannot be opened or does not answer is
listed as offline with its error.

exit status:
  0  every device is ok
  1  at least one device is not ok (degraded, fault, offline or error)
  3  the config itself cannot be read (docs/cli.md: every exit code)
"""


def cmd_dispenser(args: argparse.Namespace) -> int:
    from terminal.diag.dispenser import report
    from terminal.errors import DeviceError

    try:
        with _open(args, "dispenser") as device:
            _emit(report(device, test=args.test), args.json)
    except DeviceError as exc:
        return _offline("dispenser", exc, args.json)
    return 0


def cmd_pinpad(args: argparse.Namespace) -> int:
    from terminal.diag.pinpad import device_report, load_master_key
    from terminal.drivers.pinpad.epp import EppPinPad
    from terminal.errors import DeviceError

    if args.pinpad_command == "keys-load":
        # read before the pad is opened; load_master_key checks them and the combined
        # key's KCV before it sends anything, so a mismatch leaves the slot as it was
        components = _components(args)
    try:
        with _open(args, "pinpad") as device:
            if args.pinpad_command == "keys-load":
                if not isinstance(device, EppPinPad):
                    raise ConfigError(
                        args.config, "devices.pinpad.backend", "key loading needs an EPP"
                    )
                _emit(load_master_key(device, components, expected_kcv=args.kcv), args.json)
                return 0
            report = device_report(device)
    except DeviceError as exc:
        return _offline("pinpad", exc, args.json)
    _emit(report, args.json)
    return 0 if report.get("status") == "ok" and "error" not in report else int(ExitCode.DEVICE)


def _components(args: argparse.Namespace) -> list[str]:
    """The clear key components, never from the command line (it lands in shell history):
    from a private file, one per line, or typed without echo by each custodian."""
    from terminal.diag.pinpad import component_kcv

    if args.components_file:
        path = Path(args.components_file)
        try:
            mode = path.stat().st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(str(path), "", "is not a file of key components")
            if mode & 0o077:
                raise ConfigError(
                    str(path), "", "others may read these key components: chmod 600 it first"
                )
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), "", f"cannot read the key components: {exc}") from None
        lines = (ln.strip() for ln in text.splitlines())
        return [ln for ln in lines if ln and not ln.startswith("#")]
    if not MIN_COMPONENTS <= args.components <= MAX_COMPONENTS:
        raise UsageError(
            f"--components {args.components}: a TMK has {MIN_COMPONENTS}-{MAX_COMPONENTS}"
            " components"
        )
    if not sys.stdin.isatty():  # getpass would fall back to reading, and echoing, stdin
        raise UsageError(
            "no terminal to type the key components at without echo:"
            " give them in a private file, --components-file FILE (chmod 600)"
        )
    parts = []
    for part in range(1, args.components + 1):
        component = getpass.getpass(f"component {part} of {args.components} (hex, not shown): ")
        parts.append(component.strip())
        # each custodian checks their own part's KCV against their envelope
        print(f"component {part}: KCV {component_kcv(parts[-1])}", file=sys.stderr)
    return parts


def cmd_gps(args: argparse.Namespace) -> int:
    from terminal.diag.gps import diagnose, replay_fixes, replay_json_lines

    if args.replay:
        if args.json:
            for line in replay_json_lines(args.replay):
                print(line)
        else:
            for fix in replay_fixes(args.replay):
                print("  ".join(f"{k}={_text(v)}" for k, v in fix.items()))
        return 0
    config = _config(args.config)
    _keep_off_a_running_terminal(config, args.force)
    report = diagnose(config)
    _emit(report, args.json)
    return int(ExitCode.DEVICE) if report.get("status") == "offline" else 0


def cmd_camera(args: argparse.Namespace) -> int:
    from terminal.config import load_config
    from terminal.diag.camera import diagnose, verify_images

    if args.verify:
        if not (args.enrolled and args.probe):
            raise ConfigError("atm diag camera", "--verify", "needs --enrolled IMG and --probe IMG")
        result = verify_images(args.enrolled, args.probe, tolerance=args.tolerance)
        print(json.dumps(result) if args.json else "  ".join(f"{k}={v}" for k, v in result.items()))
        return 0 if result.get("match") else 1
    config = load_config(Path(args.config))
    _keep_off_a_running_terminal(config, args.force)
    _emit(diagnose(config, snapshot=args.snapshot), args.json)
    return 0


def cmd_card_reader(args: argparse.Namespace) -> int:
    from terminal.diag.card_reader import card_reader_report, format_report

    result = card_reader_report(args.reader)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0 if result.get("error") is None else int(ExitCode.DEVICE)


def cmd_saf(args: argparse.Namespace) -> int:
    from terminal.diag.saf import report

    _emit(report(journal_path(args), requeue=args.retry), args.json)
    return 0


def add_diag_parser(sub: Any) -> None:
    diag = sub.add_parser("diag", help="field-engineer diagnostics")
    dsub = diag.add_subparsers(dest="diag_command", required=True)

    def device(name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = dsub.add_parser(name, help=help_text, **kwargs)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="the terminal's TOML config")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument(
            "--force",
            action="store_true",
            help="open the devices even while a terminal (atm run) on this config holds them",
        )
        return p

    status = device(
        "status",
        "every configured device: state, model/firmware/serial, counters, last error",
        description="Open every configured device and report how it is.",
        epilog=STATUS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.set_defaults(func=cmd_status)

    disp = device("dispenser", "cassette counts, sensors; --test dispenses to the reject bin")
    disp.add_argument("--test", action="store_true", help="one note per cassette to the reject bin")
    disp.set_defaults(func=cmd_dispenser)

    pad = device("pinpad", "device info and key check values (never keys)")
    pad.set_defaults(func=cmd_pinpad, pinpad_command="report")
    psub = pad.add_subparsers(dest="pinpad_command")
    keys = psub.add_parser("keys", help="key management")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    load = ksub.add_parser("load", help="key ceremony: load the TMK from components")
    load.add_argument(
        "--kcv",
        required=True,
        help="the check value the bank sent for the combined key: checked before anything"
        " is loaded, nothing is loaded on a mismatch",
    )
    load.add_argument(
        "--components",
        type=int,
        default=MIN_COMPONENTS,
        help="how many custodians type a component (hex, without echo)",
    )
    load.add_argument(
        "--components-file",
        help="a private (0600) file with the hex components, one per line, instead of the prompt",
    )
    # SUPPRESS: given after "pinpad", --config/--json/--force keep their value here
    load.add_argument("--config", default=argparse.SUPPRESS, help="the terminal's TOML config")
    load.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    load.add_argument(
        "--force", action="store_true", default=argparse.SUPPRESS, help="as diag pinpad --force"
    )
    load.set_defaults(func=cmd_pinpad, pinpad_command="keys-load")

    gps = device("gps", "the current fix; --replay FILE reads an NMEA log")
    gps.add_argument("--replay", help="NMEA log file: one line (or JSON object) per fix")
    gps.set_defaults(func=cmd_gps)

    cam = device("camera", "camera status; --snapshot saves a frame; --verify compares faces")
    cam.add_argument("--snapshot", help="save a JPEG of the current frame here")
    cam.add_argument("--verify", action="store_true", help="1:1 face verification of two images")
    cam.add_argument("--enrolled", help="image of the enrolled face")
    cam.add_argument("--probe", help="image to check against it")
    cam.add_argument("--tolerance", type=float, default=0.5, help="face distance to accept")
    cam.set_defaults(func=cmd_camera)

    card = dsub.add_parser("card-reader", help="PC/SC readers, ATR and masked PAN of a card")
    card.add_argument("--reader", default="Virtual PCD", help="reader name pattern")
    card.add_argument("--json", action="store_true", help="machine-readable output")
    card.set_defaults(func=cmd_card_reader)

    saf = dsub.add_parser("saf", help="store-and-forward queue and exception queue")
    saf.add_argument(
        "--config", default=DEFAULT_CONFIG, help="the terminal's TOML config: its queue is read"
    )
    saf.add_argument("--journal", help="the journal whose queue to read instead of the config's")
    saf.add_argument("--retry", action="store_true", help="requeue the exception queue")
    saf.add_argument("--json", action="store_true", help="machine-readable output")
    saf.set_defaults(func=cmd_saf)
