"""``atm diag ...``: field-engineer diagnostics, each device through the terminal's config.

Human output by default, ``--json`` for tools. A device that cannot be reached is a
finding, printed as such, not a crash.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from atm_common.errors import AtmError, ConfigError

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "data" / "sim-terminal.toml")


def _emit(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{key}:")
            for row in value:
                print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
        else:
            print(f"{key}: {value}")


def _open(config_path: str, kind: str) -> Any:
    from atm_common.clock import SystemClock
    from terminal.config import load_config
    from terminal.drivers.base import create_device

    config = load_config(Path(config_path))
    section = config.devices.get(kind)
    if section is None:
        raise ConfigError(config.source, f"devices.{kind}", "not configured")
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
  2  the config itself cannot be read
"""


def cmd_dispenser(args: argparse.Namespace) -> int:
    from terminal.diag.dispenser import report

    with _open(args.config, "dispenser") as device:
        _emit(report(device, test=args.test), args.json)
    return 0


def cmd_pinpad(args: argparse.Namespace) -> int:
    from terminal.diag.pinpad import device_report, load_master_key
    from terminal.drivers.pinpad.epp import EppPinPad

    with _open(args.config, "pinpad") as device:
        if args.pinpad_command == "keys-load":
            if not isinstance(device, EppPinPad):
                raise ConfigError(args.config, "devices.pinpad.backend", "key loading needs an EPP")
            result = load_master_key(device, args.component, expected_kcv=args.kcv)
            _emit(result, args.json)
            return 0 if result.get("kcv_matches", True) else 1
        _emit(device_report(device), args.json)
    return 0


def cmd_gps(args: argparse.Namespace) -> int:
    from terminal.diag.gps import diagnose, replay_fixes, replay_json_lines

    if args.replay:
        if args.json:
            for line in replay_json_lines(args.replay):
                print(line)
        else:
            for fix in replay_fixes(args.replay):
                print("  ".join(f"{k}={v}" for k, v in fix.items()))
        return 0
    from terminal.config import load_config

    _emit(diagnose(load_config(Path(args.config))), args.json)
    return 0


def cmd_camera(args: argparse.Namespace) -> int:
    from terminal.config import load_config
    from terminal.diag.camera import diagnose, verify_images

    if args.verify:
        if not (args.enrolled and args.probe):
            raise ConfigError("atm diag camera", "--verify", "needs --enrolled IMG and --probe IMG")
        result = verify_images(args.enrolled, args.probe, tolerance=args.tolerance)
        print(json.dumps(result) if args.json else "  ".join(f"{k}={v}" for k, v in result.items()))
        return 0 if result.get("match") else 1
    _emit(diagnose(load_config(Path(args.config)), snapshot=args.snapshot), args.json)
    return 0


def cmd_card_reader(args: argparse.Namespace) -> int:
    from terminal.diag.card_reader import card_reader_report, format_report

    result = card_reader_report(args.reader)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0 if result.get("error") is None else 1


def cmd_saf(args: argparse.Namespace) -> int:
    from terminal.diag.saf import report

    _emit(report(Path(args.journal), requeue=args.retry), args.json)
    return 0


def add_diag_parser(sub: Any) -> None:
    diag = sub.add_parser("diag", help="field-engineer diagnostics")
    dsub = diag.add_subparsers(dest="diag_command", required=True)

    def device(name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = dsub.add_parser(name, help=help_text, **kwargs)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="the terminal's TOML config")
        p.add_argument("--json", action="store_true", help="machine-readable output")
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
    load.add_argument("--component", action="append", required=True, help="hex, one per custodian")
    load.add_argument("--kcv", help="the expected check value of the combined key")
    # SUPPRESS: given after "pinpad", --config/--json keep their value here
    load.add_argument("--config", default=argparse.SUPPRESS)
    load.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
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
    card.add_argument("--json", action="store_true")
    card.set_defaults(func=cmd_card_reader)

    saf = dsub.add_parser("saf", help="store-and-forward queue and exception queue")
    saf.add_argument("--journal", default="var/journal.db", help="the terminal's journal path")
    saf.add_argument("--retry", action="store_true", help="requeue the exception queue")
    saf.add_argument("--json", action="store_true")
    saf.set_defaults(func=cmd_saf)


def main_error(exc: AtmError) -> int:
    print(f"atm diag: error: {exc}", file=sys.stderr)
    return 2
