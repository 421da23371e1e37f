"""Supervisor keys kept as salted scrypt hashes (atm_common.keyhash), the config's check
of them, ``SupervisorMode.enter`` against them, and ``atm supervisor-key`` as a real
process (stdin, and a real pseudo-terminal for the no-echo prompt)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from atm_common.errors import ConfigError, ExitCode
from atm_common.keyhash import KeyHash, KeyHashError, hash_key, parse_key_hash, verify_key
from terminal.config import parse_config
from terminal.supervisor.errors import SupervisorError
from terminal.supervisor.roles import SupervisorMode, key_digest
from tests.pty_console import PtyProcess

ATM = [sys.executable, "-m", "atm"]
REP, TECH = "48151623", "314159265358"
BASE = '[terminal]\nid = "ATM00001"\n[host]\naddress = "127.0.0.1"\nport = 8583\nplain = true\n'


def _config(keys: str) -> object:
    return parse_config(tomllib.loads(BASE + "[supervisor.keys]\n" + keys), "kiosk.toml")


def test_hash_and_verify_round_trip_a_wrong_key_fails_and_every_hash_has_its_own_salt() -> None:
    stored = hash_key(REP)
    assert stored.startswith("scrypt$16384$8$1$") and REP not in stored
    parsed = parse_key_hash(stored)
    assert (parsed.n, parsed.r, parsed.p, len(parsed.salt), len(parsed.hash)) == (
        16384, 8, 1, 16, 32,
    )  # fmt: skip
    assert verify_key(REP, stored)
    assert not verify_key("48151624", stored) and not verify_key("", stored)
    again = hash_key(REP)
    assert again != stored and parse_key_hash(again).salt != parsed.salt
    assert verify_key(REP, again)
    assert key_digest(REP) != key_digest(REP)  # the supervisor's name for it: salted too


def test_malformed_and_old_hashes_are_refused_without_the_value() -> None:
    old = hashlib.sha256(REP.encode()).hexdigest()
    with pytest.raises(KeyHashError, match="unsalted SHA-256"):
        parse_key_hash(old)
    good = hash_key(REP).split("$")
    for bad in (
        REP,  # the key itself
        "$".join(["bcrypt", *good[1:]]),
        "$".join([good[0], "16000", *good[2:]]),  # n not a power of 2
        "$".join([good[0], str(2**22), *good[2:]]),  # gigabytes
        "$".join([*good[:4], "!!", good[5]]),  # salt not base64
        "$".join([*good[:4], "c2hvcnQ", good[5]]),  # salt too short
        "$".join(good[:5]),
    ):
        with pytest.raises(KeyHashError) as caught:
            parse_key_hash(bad)
        assert REP not in str(caught.value)


def test_the_config_refuses_the_old_sha256_and_says_how_to_make_a_new_one() -> None:
    stored = hash_key(REP)
    config = _config(f'replenisher = "{stored}"')
    assert config.supervisor.keys == {"replenisher": stored}  # type: ignore[attr-defined]
    old = hashlib.sha256(REP.encode()).hexdigest()
    with pytest.raises(ConfigError) as caught:
        _config(f'technician = "{old}"')
    message = str(caught.value)
    assert message.startswith("kiosk.toml: supervisor.keys.technician: ")
    assert "unsalted SHA-256" in message and "atm supervisor-key --role technician" in message
    assert "\n" not in message and old not in message
    with pytest.raises(ConfigError, match=r"supervisor.keys.replenisher: is not a scrypt") as bad:
        _config(f'replenisher = "{REP}"')  # the key itself
    assert REP not in str(bad.value)


def test_enter_checks_every_role_so_the_time_does_not_say_which_matched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = {"replenisher": hash_key(REP), "technician": hash_key(TECH)}
    checked: list[bytes] = []
    matches = KeyHash.matches

    def counting(self: KeyHash, key: str) -> bool:
        checked.append(self.salt)
        return matches(self, key)

    monkeypatch.setattr(KeyHash, "matches", counting)
    mode = SupervisorMode(keys)
    assert mode.enter(REP, in_session=False) == "replenisher" and len(checked) == 2
    mode.leave()
    assert mode.enter(TECH, in_session=False) == "technician" and len(checked) == 4
    mode.leave()
    with pytest.raises(SupervisorError, match="not recognised"):
        mode.enter("000000", in_session=False)
    assert len(checked) == 6 and mode.role is None
    with pytest.raises(SupervisorError, match="between customers"):
        mode.enter(REP, in_session=True)
    with pytest.raises(SupervisorError, match=r"supervisor key of technician: .*unsalted"):
        SupervisorMode({"technician": hashlib.sha256(TECH.encode()).hexdigest()})


def _command(stdin: str, *roles: str) -> subprocess.CompletedProcess[str]:
    args = [a for role in roles for a in ("--role", role)]
    return subprocess.run(
        [*ATM, "supervisor-key", *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.e2e
def test_supervisor_key_reads_stdin_and_prints_lines_the_config_takes(tmp_path: Path) -> None:
    done = _command(f"{REP}\n{TECH}\n", "replenisher", "technician")
    assert done.returncode == 0, done.stderr
    assert REP not in done.stdout + done.stderr and TECH not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" = ")[0] for line in lines] == ["replenisher", "technician"]
    config = tmp_path / "kiosk.toml"
    config.write_text(BASE + "[supervisor.keys]\n" + done.stdout)
    from terminal.config import load_config

    mode = SupervisorMode(load_config(config).supervisor.keys)
    assert mode.enter(TECH, in_session=False) == "technician"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("stdin", "words"),
    [
        ("12345\n", "6-16 digits, got 5"),
        ("12345678901234567\n", "6-16 digits, got 17"),
        ("12ab5678\n", "digits only"),
        ("\n", "no supervisor key given"),
        ("", "no supervisor key for replenisher on stdin"),
    ],
)
def test_supervisor_key_refuses_a_bad_key_in_one_line(stdin: str, words: str) -> None:
    done = _command(stdin, "replenisher")
    assert done.returncode == ExitCode.USAGE and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("atm: error: ") and words in done.stderr
    if stdin.strip():
        assert stdin.strip() not in done.stderr


@pytest.mark.e2e
def test_supervisor_key_refuses_the_key_as_an_argument_and_one_key_for_two_roles() -> None:
    on_argv = subprocess.run(
        [*ATM, "supervisor-key", "--role", "replenisher", REP],
        input="", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert on_argv.returncode == ExitCode.USAGE and "Traceback" not in on_argv.stderr
    same = _command(f"{REP}\n{REP}\n", "replenisher", "technician")
    assert same.returncode == ExitCode.USAGE and same.stdout == ""
    assert "its own supervisor key" in same.stderr and REP not in same.stderr


@pytest.mark.e2e
@pytest.mark.serial_pty
def test_supervisor_key_at_a_terminal_asks_twice_without_echo() -> None:
    typed = PtyProcess([*ATM, "supervisor-key", "--role", "technician"])
    try:
        typed.expect(r"supervisor key for technician \(digits, not shown\): ")
        typed.line(TECH)
        typed.expect(r"the same key again for technician: ")
        typed.line(TECH)
        line = typed.expect(r'technician = "(scrypt\$[^"]+)"').group(1)
        assert typed.wait() == 0
        assert TECH not in typed.screen and verify_key(TECH, line)
    finally:
        typed.close()
    differ = PtyProcess([*ATM, "supervisor-key", "--role", "replenisher"])
    try:
        differ.expect(r"\(digits, not shown\): ")
        differ.line(REP)
        differ.expect(r"again for replenisher: ")
        differ.line("48151624")
        differ.expect(r"atm: error: the two supervisor keys typed for replenisher differ")
        assert differ.wait() == ExitCode.USAGE
        assert REP not in differ.screen and "scrypt$" not in differ.screen
    finally:
        differ.close()
