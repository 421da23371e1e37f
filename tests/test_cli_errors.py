"""Every error a user can cause is one line and an exit code of its class (docs/cli.md).

Each case runs the real command as a subprocess (``python -m atm``) and checks that it
shows no traceback, says what was wrong, and exits with its class: usage 2, config 3,
device 4, host 5, data 6 (:class:`atm_common.errors.ExitCode`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atm.cli import build_parser
from atm_common.cli import subparsers
from atm_common.clock import ManualClock
from atm_common.errors import ExitCode
from atm_common.lockfile import exclusive
from sim.host.api import create_app
from terminal.cli.diag import DEFAULT_CONFIG
from terminal.journal import Journal
from terminal.saf import SafQueue

ATM = [sys.executable, "-m", "atm"]
SIM = [sys.executable, "-m", "sim"]
ROOT = Path(__file__).resolve().parents[1]
DEMO_SEED = ROOT / "sim" / "data" / "demo-seed.toml"


def atm(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ATM, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )


def refused(run: subprocess.CompletedProcess[str], code: ExitCode, *words: str) -> str:
    """The run failed with ``code``, in one ``atm: error:`` line naming ``words``."""
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    line = run.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in line, (word, line)
    return line


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process (this one) already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "host.key"
    path.write_text(os.urandom(32).hex())
    path.chmod(0o600)
    return path


def kiosk_config(tmp_path: Path, devices: str | None = None) -> Path:
    """The simulated terminal's config, its journal in ``tmp_path/var``."""
    text = Path(DEFAULT_CONFIG).read_text()
    text = text.replace('journal = "../../var/journal.db"', 'journal = "var/journal.db"')
    text = re.sub(r"^tls = \{.*\}$", "plain = true", text, flags=re.M)
    if devices is not None:
        text = text[: text.index("[devices.")] + devices
    config = tmp_path / "kiosk.toml"
    config.write_text(text)
    return config


# -- ports in use ---------------------------------------------------------------------


def test_host_port_in_use(tmp_path: Path, taken_port: int) -> None:
    run = atm(
        "host", "--plain", "--demo", "--db", str(tmp_path / "h.db"), "--port", str(taken_port)
    )
    refused(run, ExitCode.HOST, str(taken_port), "in use", "another port")


def test_host_api_port_in_use(tmp_path: Path, taken_port: int) -> None:
    run = atm(
        *("host", "--plain", "--demo", "--db", str(tmp_path / "h.db"), "--port", "0"),
        *("--api-port", str(taken_port)),
    )
    refused(run, ExitCode.HOST, f"127.0.0.1:{taken_port}", "in use")


def test_alarm_center_port_in_use(tmp_path: Path, taken_port: int, key_file: Path) -> None:
    run = atm(
        *("alarm-center", "--plain", "--host-key-file", str(key_file)),
        *("--db", str(tmp_path / "a.db"), "--port", str(taken_port)),
    )
    refused(run, ExitCode.HOST, f"127.0.0.1:{taken_port}", "in use")


def test_carrier_port_in_use(taken_port: int, key_file: Path) -> None:
    run = atm("carrier", "--plain", "--host-key-file", str(key_file), "--port", str(taken_port))
    refused(run, ExitCode.HOST, f"127.0.0.1:{taken_port}", "in use")


# -- paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("diag", "status"), ("run",), ("journal", "tail"), ("diag", "saf"), ("diag", "gps")],
)
def test_a_config_path_that_is_a_folder(tmp_path: Path, command: tuple[str, ...]) -> None:
    refused(atm(*command, "--config", str(tmp_path)), ExitCode.CONFIG, str(tmp_path), "folder")


def test_a_db_that_is_a_folder(tmp_path: Path) -> None:
    run = atm("host", "--plain", "--demo", "--db", str(tmp_path), "--port", "0")
    refused(run, ExitCode.CONFIG, str(tmp_path), "folder")


@pytest.mark.serial_pty
def test_sim_devices_config_out_that_cannot_be_written(tmp_path: Path) -> None:
    run = atm("sim", "devices", "--plain", "--config-out", str(tmp_path), "--seconds", "1")
    refused(run, ExitCode.CONFIG, str(tmp_path), "folder")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "kiosk.toml"  # its "folder" is a file
    run = atm("sim", "devices", "--plain", "--config-out", str(out), "--seconds", "1")
    refused(run, ExitCode.CONFIG, str(out))
    made = tmp_path / "new" / "kiosk.toml"  # a folder that does not exist yet is made
    assert (
        atm("sim", "devices", "--plain", "--config-out", str(made), "--seconds", "1").returncode
        == 0
    )
    assert "[devices.pinpad]" in made.read_text()


def test_demo_refuses_a_used_workdir(tmp_path: Path) -> None:
    (tmp_path / "host.db").write_bytes(b"")
    line = refused(atm("demo", "--workdir", str(tmp_path)), ExitCode.CONFIG, str(tmp_path))
    assert "earlier run" in line and "host.db" in line and "empty" in line


# -- usage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [*ATM, "--log-level", "verbose", "diag", "gps"],
        [*SIM, "--log-level", "verbose", "host", "--plain"],
        [*ATM, "soak", "--transactions", "-5"],
        [*ATM, "soak", "--transactions", "0"],
        [*ATM, "soak", "--fault-rate", "2"],
        [*ATM, "host", "--plain", "--port", "70000"],
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], tmp_path: Path) -> None:
    run = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert "Traceback" not in run.stderr
    assert run.returncode == ExitCode.USAGE and "error: argument" in run.stderr
    assert not (tmp_path / "var").exists()  # nothing was started


def test_fsm_diagram_suffix_is_checked(tmp_path: Path) -> None:
    refused(atm("fsm", "--diagram", str(tmp_path / "x.txt")), ExitCode.USAGE, "x.txt", ".mmd")
    assert list(tmp_path.iterdir()) == []  # not silently written as x.mmd


# -- one writer per file --------------------------------------------------------------


def test_a_second_host_on_the_same_ledger_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "host.db"
    with exclusive(db, "the test's host"):  # the first `atm host` holds this
        run = atm("host", "--plain", "--demo", "--db", str(db), "--port", "0")
    line = refused(run, ExitCode.HOST, f"another host is already serving {db}")
    assert f"pid {os.getpid()}" in line
    assert not db.exists()  # the second one opened nothing


def test_a_second_host_process_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "host.db"
    first = subprocess.Popen(
        [*ATM, "host", "--plain", "--demo", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdout.readline().startswith("listening on")
        run = atm("host", "--plain", "--demo", "--db", str(db), "--port", "0")
        refused(run, ExitCode.HOST, "another host is already serving", f"pid {first.pid}")
    finally:
        first.terminate()
        first.wait(timeout=10)
    # the lock died with its holder: the ledger can be served again
    with exclusive(db, "a restarted host"):
        pass


def test_a_second_terminal_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    config = kiosk_config(tmp_path)
    with exclusive(tmp_path / "var" / "journal.db", "the first terminal"):
        run = atm("run", "--sim", "--config", str(config))
    refused(run, ExitCode.HOST, "a terminal is already running on")


def test_diag_keeps_off_the_devices_of_a_running_terminal(tmp_path: Path) -> None:
    config = kiosk_config(tmp_path)
    with exclusive(tmp_path / "var" / "journal.db", "atm run"):
        run = atm("diag", "dispenser", "--config", str(config), "--json")
        refused(run, ExitCode.HOST, "is running on", "holds its devices", "--force")
        forced = atm("diag", "dispenser", "--config", str(config), "--json", "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["status"] == "ok"
    assert atm("diag", "dispenser", "--config", str(config)).returncode == 0  # lock gone


# -- journal and SAF where the terminal writes them -----------------------------------


def test_journal_and_saf_are_read_where_the_config_puts_them(tmp_path: Path) -> None:
    config = kiosk_config(tmp_path)
    journal = tmp_path / "var" / "journal.db"
    journal.parent.mkdir()
    written = Journal(journal, ManualClock())
    written.record("session_start", "s1", pan="476173******0051")
    written.close()  # a session's events reach the file at its next commit
    SafQueue(tmp_path / "var" / "journal-saf.db", ManualClock()).enqueue(
        {"t": "0400", "11": "000042", "90": "0" * 42}
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # started from another folder: no var/journal.db here
    tail = atm("journal", "tail", "--config", str(config), "--json", cwd=elsewhere)
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line)["event"] for line in tail.stdout.splitlines()] == ["session_start"]
    saf = atm("diag", "saf", "--config", str(config), "--json", cwd=elsewhere)
    assert saf.returncode == 0, saf.stderr
    assert [e["stan"] for e in json.loads(saf.stdout)["pending"]] == ["000042"]


def test_atm_run_takes_host_and_port() -> None:
    from terminal.cli.interactive import with_host
    from terminal.config import load_config

    config = with_host(load_config(Path(DEFAULT_CONFIG)), "10.1.2.3", 9583)
    assert (config.host.address, config.host.port) == ("10.1.2.3", 9583)
    args = build_parser().parse_args(["run", "--sim", "--host", "10.1.2.3", "--port", "9583"])
    assert (args.host, args.port) == ("10.1.2.3", 9583)


# -- diag: the same JSON and exit code for every device -------------------------------

UNREACHABLE = """\
[devices.dispenser]
backend = "lcdm"
url = "/dev/nonexistent-dispenser"
denominations = [2000]
counts = [10]

[devices.pinpad]
backend = "epp"
url = "/dev/nonexistent-pinpad"

[devices.gps]
backend = "nmea"
url = "/dev/nonexistent-gps"
"""


@pytest.mark.parametrize("device", ["dispenser", "pinpad", "gps"])
def test_an_unreachable_device_is_reported_alike(tmp_path: Path, device: str) -> None:
    config = kiosk_config(tmp_path, UNREACHABLE)
    run = atm("diag", device, "--config", str(config), "--json")
    assert "Traceback" not in run.stderr
    assert run.returncode == ExitCode.DEVICE, (run.stdout, run.stderr)
    report = json.loads(run.stdout)
    assert report["status"] == "offline" and f"nonexistent-{device}" in report["error"]
    human = atm("diag", device, "--config", str(config))
    assert human.returncode == ExitCode.DEVICE and "offline" in human.stdout
    assert "Traceback" not in human.stderr


def test_human_diag_output_shows_no_python_reprs() -> None:
    run = atm("diag", "pinpad")  # the simulated pad: key check values by key name
    assert run.returncode == 0, run.stderr
    assert "TMK=" in run.stdout
    assert "{'" not in run.stdout and "None" not in run.stdout and "True" not in run.stdout


# -- help and version -----------------------------------------------------------------


def test_version() -> None:
    run = atm("--version")
    assert run.returncode == 0 and re.fullmatch(r"atm \d+\.\d+\.\S+\n", run.stdout)


def test_every_command_has_examples_and_every_option_help() -> None:
    parser = build_parser()
    commands = [("", parser), *subparsers(parser)]
    assert len(commands) > 30
    for name, command in commands:
        assert command.epilog and "examples:\n  atm" in command.epilog, name
        for action in command._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"atm {name}: {action.option_strings or action.dest}"
    top = atm("--help").stdout
    assert "only module that prints" not in top and "everything below it logs" not in top
    soak = atm("soak", "--help").stdout
    assert "(default: 2000)" in soak and "examples:" in soak


def test_the_exit_code_table_is_documented() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    for code in ExitCode:
        name = code.name.lower().replace("_", " ")
        assert re.search(rf"^\| {int(code)} \| {name} \|", text, re.M), code


# -- phone and soak -------------------------------------------------------------------


@pytest.mark.e2e
def test_phone_says_no_the_same_way_for_a_wrong_code_and_a_face_mismatch(
    tmp_path: Path,
) -> None:
    from sim.data import FACES_DIR
    from sim.scenarios.demo import host_process

    with host_process(tmp_path / "h.db", DEMO_SEED, api=True, demo=True, pki=None) as host:
        phone = ("phone", "--url", host.api_url, "--phone", "+4915100000006")
        created = atm(*phone, "request")
        assert created.returncode == 0, created.stderr
        request_id = json.loads(created.stdout)["request_id"]
        wrong = atm(*phone, "verify", request_id, "000000")
        assert wrong.returncode == ExitCode.CHECK_FAILED and "Traceback" not in wrong.stderr
        assert json.loads(wrong.stdout)["status"] == 403
        from sim.phone.client import _CODE

        texts = json.loads(atm(*phone, "messages").stdout)
        code = next(m.group(1) for t in reversed(texts) if (m := _CODE.search(t["text"])))
        assert atm(*phone, "verify", request_id, code).returncode == 0
        other = atm(*phone, "face", request_id, str(FACES_DIR / "biden.jpg"), timeout=120)
        assert other.returncode == ExitCode.CHECK_FAILED, other.stderr
        assert json.loads(other.stdout)["match"] is False
    gone = atm(*phone, "request")  # the host has stopped
    refused(gone, ExitCode.HOST, "cannot reach the bank")


@pytest.mark.e2e
def test_soak_json_has_the_outcome_counts(tmp_path: Path) -> None:
    run = atm(
        *("soak", "--transactions", "6", "--faults", "none", "--workdir", str(tmp_path)),
        "--json",
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert sum(report["outcomes"].values()) == 6
    for key in ("terminal_restarts", "host_restarts", "cash_handed_out", "duress_sessions"):
        assert key in report
    assert run.stderr == ""  # no progress drawn when not on a terminal


# -- the API pages --------------------------------------------------------------------


def test_docs_pages_load_nothing_from_a_cdn(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.host.helpers import open_host

    host = open_host(tmp_path / "host.db", ManualClock())
    try:
        from sim.host.cardless.phone import PhoneBank

        api = TestClient(create_app(PhoneBank(host.authoriser.cardless)))
        for page in ("/docs", "/redoc"):
            html = api.get(page).text
            sources = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
            assert sources and all(s.startswith("/") for s in sources), (page, sources)
            for source in sources:
                assert api.get(source).status_code == 200, source
    finally:
        host.conn.close()
