"""Data at rest: what the host, the terminal and the demo write is private to its owner,
and the host refuses to run a bank on the repository's public demo keys.

The processes are real (``python -m atm ...``) and started with ``umask 022``, the
usual default that made ``host.db`` and the logs world-readable (0644): every file they
create must still be 0600 and every directory 0700. The library functions are checked
the same way in-process, for programs that embed the host or the terminal.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from atm_common.files import private_dir, private_file, write_private
from sim.host import db
from sim.host.public_keys import PUBLISHED_KEYS, fingerprint
from sim.scenarios.demo import DEMO_SEED
from terminal.counters import DurableStan
from terminal.journal import Journal

ATM = [sys.executable, "-m", "atm"]
REPO = Path(__file__).resolve().parents[2]
TERMINAL_TOML = REPO / "terminal" / "data" / "sim-terminal.toml"


def modes(root: Path) -> dict[str, str]:
    """``{relative path: octal mode}`` of ``root`` and everything below it."""
    out = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return out


def not_private(root: Path) -> dict[str, str]:
    """What under ``root`` (itself included) is not 0700 (directories) or 0600 (files)."""
    wrong = {}
    for name, mode in modes(root).items():
        path = root / name
        want = "0o700" if path.is_dir() else "0o600"
        if mode != want:
            wrong[name] = mode
    return wrong


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The in-process library checks run under the common default umask."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- real processes ------------------------------------------------------------------------


@pytest.mark.e2e
def test_atm_host_creates_only_private_files_and_dirs(tmp_path: Path) -> None:
    var = tmp_path / "var"  # does not exist: the host creates it, and its sub-directory
    cmd = [*ATM, "host", "--demo", "--plain", "--db", str(var / "host.db"), "--port", "0"]
    cmd += ["--log", str(var / "log" / "host.log")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, umask=0o022
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line + (proc.stderr.read() if proc.stderr else "")
        running = modes(var)
        wrong_while_running = not_private(var)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    # while it serves: the database, its WAL companions and the log exist
    assert {"host.db", "host.db-wal", "host.db-shm", "log", "log/host.log"} <= set(running)
    assert wrong_while_running == {}, running
    assert not_private(var) == {}, modes(var)


@pytest.mark.e2e
def test_atm_demo_workdir_is_private_throughout(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"  # created by the demo itself
    run = subprocess.run(
        [*ATM, "demo", "--json", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        umask=0o022,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    written = modes(workdir)
    # host, terminal (journal, SAF queue, counters) and services all wrote here
    for name in ("host.db", "host.log", "journal.db", "journal-saf.db", "journal-counters.db"):
        assert name in written, sorted(written)
    assert "alarms.db" in written and "alarm-center.log" in written
    assert not_private(workdir) == {}, written


# -- the same guarantees for library users (any umask) ---------------------------------------


def test_library_databases_are_private_under_a_loose_umask(tmp_path: Path, umask_022: None) -> None:
    host = db.connect(tmp_path / "host" / "host.db")
    host.execute("INSERT INTO persons (id, name) VALUES ('p', 'P')")  # the WAL exists now
    journal = Journal(tmp_path / "terminal" / "journal.db", ManualClock())
    journal.record("terminal_start")
    stan = DurableStan(tmp_path / "terminal" / "journal-counters.db")
    stan.next()
    try:
        assert "host/host.db-wal" in modes(tmp_path) and "terminal/journal.db-wal" in modes(
            tmp_path
        )
        wrong = not_private(tmp_path / "host") | not_private(tmp_path / "terminal")
        assert wrong == {}, modes(tmp_path)
    finally:
        host.close()
        journal.close()
        stan.close()


def test_an_old_world_readable_database_is_tightened_when_opened(
    tmp_path: Path, umask_022: None
) -> None:
    path = tmp_path / "host.db"
    db.connect(path).close()
    for p in tmp_path.iterdir():
        p.chmod(0o644)  # as an older version left it
    db.connect(path).close()
    assert oct(stat.S_IMODE(path.stat().st_mode)) == "0o600"


def test_helpers_create_private_and_leave_existing_dirs_alone(
    tmp_path: Path, umask_022: None
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    write_private(shared / "a" / "b" / "seed.toml", "lmk = 'x'\n")
    private_file(shared / "a" / "log.txt")
    private_dir(shared / "c")
    assert oct(stat.S_IMODE(shared.stat().st_mode)) == "0o755"  # not ours to change
    assert not_private(shared / "a") == {} and not_private(shared / "c") == {}
    assert (shared / "a" / "b" / "seed.toml").read_text() == "lmk = 'x'\n"


# -- the public demo keys ----------------------------------------------------------------------


def _run_host(tmp_path: Path, seed: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *ATM,
            "host",
            "--plain",
            "--db",
            str(tmp_path / "var" / "host.db"),
            "--seed",
            str(seed),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.e2e
def test_atm_host_refuses_the_demo_seed_without_demo(tmp_path: Path) -> None:
    for argv in ([], ["--seed", str(DEMO_SEED)]):  # the default seed is the demo one
        run = subprocess.run(
            [
                *ATM,
                *("host", "--plain", "--db", str(tmp_path / "var" / "host.db")),
                *("--port", "0", *argv),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 3, run.stdout + run.stderr  # ExitCode.CONFIG
        assert run.stdout == ""
        (line,) = run.stderr.splitlines()  # one line, no traceback
        assert line.startswith("atm: error: ") and "--demo" in line and "demo keys" in line
    assert not (tmp_path / "var").exists()  # refused before any file was made


@pytest.mark.e2e
def test_a_copy_without_the_marker_is_still_refused_by_its_keys(tmp_path: Path) -> None:
    copy = tmp_path / "bank.toml"
    copy.write_text(DEMO_SEED.read_text().replace("demo = true", "demo = false"))
    run = _run_host(tmp_path, copy, "--port", "0")
    assert run.returncode == 3  # ExitCode.CONFIG
    assert "host.lmk" in run.stderr and "ATM00001 tmk" in run.stderr
    assert "--demo" in run.stderr


@pytest.mark.e2e
def test_a_seed_with_its_own_keys_runs_without_demo(tmp_path: Path) -> None:
    text = DEMO_SEED.read_text().replace("demo = true", "demo = false")
    seed = tomllib.loads(text)
    fresh = {
        **{seed["host"][k]: os.urandom(16).hex().upper() for k in ("pvk", "pan_key", "lmk")},
        seed["host"]["bdk_aes"]: os.urandom(16).hex().upper(),
        **{t["tmk"]: os.urandom(16).hex().upper() for t in seed["terminals"] if "tmk" in t},
    }
    for old, new in fresh.items():
        text = text.replace(old, new)
    own = tmp_path / "bank.toml"
    own.write_text(text)  # its face photos are not beside it: only logged, not enrolled
    proc = subprocess.Popen(
        [
            *ATM,
            "host",
            "--plain",
            "--db",
            str(tmp_path / "h.db"),
            "--seed",
            str(own),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert line.startswith("listening on "), err


def test_every_key_the_repository_publishes_is_recognised() -> None:
    """A key added to the demo seed or the sample terminal config must be listed in
    sim/host/public_keys.py, or a copy of it would pass for a private one."""
    seed = tomllib.loads(DEMO_SEED.read_text())
    keys = {f"host.{k}": seed["host"][k] for k in ("pvk", "pan_key", "lmk", "bdk_aes")}
    keys |= {f"{t['id']} tmk": t["tmk"] for t in seed["terminals"] if "tmk" in t}
    terminal = tomllib.loads(TERMINAL_TOML.read_text())
    keys |= {
        f"sim-terminal.toml {name}": value
        for name, value in _hex_keys(terminal)
        if len(value) in (32, 48, 64)
    }
    missing = [
        name for name, k in keys.items() if fingerprint(bytes.fromhex(k)) not in PUBLISHED_KEYS
    ]
    assert missing == []


def _hex_keys(table: object, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every string value of a TOML table whose key names a key (tmk, pin_key, ...)."""
    if isinstance(table, dict):
        for name, value in table.items():
            yield from _hex_keys(value, f"{prefix}{name}.")
    elif isinstance(table, str) and prefix.rstrip(".").rsplit(".", 1)[-1] in (
        "tmk",
        "pin_key",
        "mac_key",
        "ik",
        "bdk",
    ):
        yield prefix.rstrip("."), table
