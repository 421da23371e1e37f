"""Field-engineer diagnostics as a user runs them: `atm sim devices` on real ptys in one
process, `atm diag ...` against them in others."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atm_common.crypto.tdes import key_check_value as check_value
from sim.data import FACES_DIR as FACES

ATM = [sys.executable, "-m", "atm"]
pytestmark = pytest.mark.serial_pty


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[Path]:
    config = tmp_path / "kiosk.toml"
    proc = subprocess.Popen(
        [
            *ATM,
            *("sim", "devices", "--plain", "--config-out", str(config), "--seconds", "120"),
            # the in-process card reader: pcscd belongs to tests/pcsc (one per machine)
            *("--card-reader", "sim", "--control", str(tmp_path / "ctl.sock")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not config.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "atm sim devices did not write its config"
            time.sleep(0.05)
        yield config
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _diag(*args: str) -> dict[str, object]:
    run = subprocess.run(
        [*ATM, "diag", *args, "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout))


def test_dispenser_test_dispense_goes_to_the_reject_bin(kiosk: Path) -> None:
    report = _diag("dispenser", "--config", str(kiosk), "--test")
    assert report["backend"] == "LcdmDispenser" and report["status"] == "ok"
    before = {c["cassette"]: c["count"] for c in report["cassettes"]}  # type: ignore[union-attr]
    after = {c["cassette"]: c["count"] for c in report["cassettes_after_test"]}  # type: ignore[union-attr]
    assert all(after[i] == before[i] - 1 for i in before)
    test = report["test_dispense"]
    assert all(v["rejected"] == 1 and v["to_exit"] == 0 for v in test.values())  # type: ignore[union-attr]


def test_pinpad_shows_check_values_never_keys(kiosk: Path) -> None:
    report = _diag("pinpad", "--config", str(kiosk))
    assert report["security"] == "tdes"
    tmk = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
    assert check_value(tmk) in json.dumps(report)
    assert "89ABCDEF01234567" not in json.dumps(report).upper()


def test_gps_current_fix(kiosk: Path) -> None:
    report = _diag("gps", "--config", str(kiosk))
    fix = report["fix"]
    assert isinstance(fix, dict) and fix["fix"] is True
    assert abs(fix["lat"] - 52.52) < 1e-6 and abs(fix["lon"] - 13.405) < 1e-6


def test_gps_replay_prints_one_object_per_fix() -> None:
    sample = Path(__file__).parent / "data" / "nmea" / "sample.nmea"
    run = subprocess.run(
        [*ATM, "diag", "gps", "--replay", str(sample), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    fixes = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(fixes) >= 5
    assert set(fixes[0]) == {"time", "lat", "lon", "alt", "fix", "quality", "satellites", "hdop"}
    assert any(f["fix"] is False for f in fixes)


def test_saf_report(tmp_path: Path) -> None:
    from atm_common.clock import ManualClock
    from terminal.saf import SafQueue

    journal = tmp_path / "journal.db"
    SafQueue(tmp_path / "journal-saf.db", ManualClock()).enqueue(
        {"t": "0400", "11": "000009", "90": "0" * 42}
    )
    report = _diag("saf", "--journal", str(journal))
    assert [e["stan"] for e in report["pending"]] == ["000009"]  # type: ignore[index]
    assert report["exception_queue"] == []


def test_unknown_device_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[terminal]\nid = "ATM00001"\n[host]\nplain = true\n[devices.dispenser]\nbackend = "lcdm"\n'
        'url = "/dev/nonexistent-tty"\ndenominations = [2000]\ncounts = [10]\n'
    )
    run = subprocess.run(
        [*ATM, "diag", "dispenser", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 4  # ExitCode.DEVICE
    assert (
        "Traceback" not in run.stderr
        and "/dev/nonexistent-tty" in run.stderr
        and "dispenser" in run.stderr
    )


def _components_file(tmp_path: Path, *parts: str) -> Path:
    path = tmp_path / "parts.txt"
    path.write_text("# one component per custodian\n" + "\n".join(parts) + "\n")
    path.chmod(0o600)
    return path


def test_key_ceremony_loads_the_master_key_from_components(kiosk: Path, tmp_path: Path) -> None:
    one, two = "01" * 16, "1F" * 16  # odd parity, as key components must have
    kcv = check_value(bytes.fromhex("1E" * 16))
    parts = _components_file(tmp_path, one, two)
    report = _diag(
        "pinpad",
        "--config",
        str(kiosk),
        "keys",
        "load",
        "--kcv",
        kcv,
        "--components-file",
        str(parts),
    )
    steps = report["components"]
    assert isinstance(steps, list) and len(steps) == 2
    assert report["tmk_kcv"] == kcv and report["kcv_matches"] is True
    assert one not in json.dumps(report) and two not in json.dumps(report)  # never echoed


def _keys_load(kiosk: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ATM, "diag", "pinpad", "--config", str(kiosk), "keys", "load", *args],
        stdin=subprocess.DEVNULL,  # no terminal, as in CI
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_key_ceremony_checks_the_kcv_before_storing_anything(kiosk: Path, tmp_path: Path) -> None:
    before = _diag("pinpad", "--config", str(kiosk))["key_check_values"]
    parts = _components_file(tmp_path, "01" * 16, "1F" * 16)
    wrong = _keys_load(kiosk, "--kcv", "AD7614", "--components-file", str(parts))
    assert wrong.returncode == 6 and wrong.stdout == ""  # ExitCode.DATA
    (line,) = wrong.stderr.splitlines()  # one line, no traceback
    assert "AD7614" in line and "nothing was loaded" in line
    assert _diag("pinpad", "--config", str(kiosk))["key_check_values"] == before


def test_key_components_never_come_from_argv_or_a_shared_file(kiosk: Path, tmp_path: Path) -> None:
    one = _keys_load(kiosk, "--kcv", "AD7614", "--component", "01" * 16)
    assert one.returncode == 2 and "--component" in one.stderr  # the option is gone
    piped = _keys_load(kiosk, "--kcv", "AD7614")  # no terminal: no prompt that would echo
    assert piped.returncode == 2 and "--components-file" in piped.stderr
    parts = _components_file(tmp_path, "01" * 16, "1F" * 16)
    parts.chmod(0o644)
    shared = _keys_load(kiosk, "--kcv", "AD7614", "--components-file", str(parts))
    assert shared.returncode == 3 and "chmod 600" in shared.stderr  # ExitCode.CONFIG
    assert "Traceback" not in shared.stderr


def test_camera_verify_prints_faces_match_distance() -> None:
    assert (FACES / "obama.jpg").exists(), f"test photos missing under {FACES}"
    genuine = subprocess.run(
        [
            *ATM,
            "diag",
            "camera",
            "--verify",
            "--enrolled",
            str(FACES / "obama.jpg"),
            "--probe",
            str(FACES / "obama2.jpg"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert genuine.returncode == 0, genuine.stderr
    result = json.loads(genuine.stdout)
    assert result["faces"] == 1 and result["match"] is True and result["distance"] < 0.5
    impostor = subprocess.run(
        [
            *ATM,
            "diag",
            "camera",
            "--verify",
            "--enrolled",
            str(FACES / "obama.jpg"),
            "--probe",
            str(FACES / "biden.jpg"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert impostor.returncode == 1 and json.loads(impostor.stdout)["match"] is False


def test_camera_snapshot_writes_a_jpeg(tmp_path: Path) -> None:
    shot = tmp_path / "snap.jpg"
    report = _diag("camera", "--snapshot", str(shot))
    assert report["status"] == "ok"
    assert shot.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG magic


def test_key_ceremony_prompts_each_custodian_without_echo(kiosk: Path) -> None:
    """On a real terminal (a pty as the controlling tty): the components are typed at
    getpass's prompt, never shown, and each one's KCV is shown to its custodian."""
    import fcntl
    import os
    import pty
    import termios

    one, two = "01" * 16, "1F" * 16
    master, slave = pty.openpty()

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    kcv = check_value(bytes.fromhex("1E" * 16))
    proc = subprocess.Popen(
        [*ATM, "diag", "pinpad", "--config", str(kiosk), "keys", "load", "--json", "--kcv", kcv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=controlling_tty,
    )
    os.close(slave)
    seen = b""
    try:
        for number, part in enumerate((one, two), 1):
            while f"component {number} of 2 (hex, not shown): ".encode() not in seen:
                seen += os.read(master, 4096)
            os.write(master, f"{part}\n".encode())
        assert proc.wait(timeout=60) == 0
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the pty closed with the process
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = seen.decode(errors="replace")
    assert one not in text and two not in text  # typed, never echoed
    assert f"component 1: KCV {check_value(bytes.fromhex(one))}" in text
    assert '"kcv_matches": true' in text
