"""``atm phone bind`` and ``atm payapp ...`` at a shell, as separate processes: JSON out,
one clear line on stderr for a refusal, passwords only on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sim.scenarios.binding_demo import BindingWorld
from tests.binding.conftest import ALICE_ACCOUNT, ALICE_PHONE


def atm(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "sim", *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def test_the_whole_binding_at_a_shell(world: BindingWorld, tmp_path: Path) -> None:
    ca = str(world.ca)
    app = ["payapp", "--url", world.payapp_url, "--ca", ca, "--state", str(tmp_path / "app")]
    registered = atm(*app, "--user", "erin.app", "register", stdin="pay-654321\n")
    assert registered.returncode == 0, registered.stderr
    _, request_id = world.bank_session(ALICE_PHONE)
    qr = tmp_path / "qr.png"
    phone = ["phone", "--url", world.api_url, "--ca", ca]
    opened = atm(*phone, "bind", request_id, ALICE_ACCOUNT, "--qr", str(qr))
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["status"] == "address" and qr.is_file()
    me = [*app, "--user", "erin.app"]
    scanned = atm(*me, "scan", "--image", str(qr))
    assert scanned.returncode == 0, scanned.stderr
    assert json.loads(scanned.stdout)["account"] == "******0001"
    assert atm(*me, "confirm").returncode == 0
    inbox = json.loads(atm(*me, "sms", ALICE_PHONE).stdout)
    code = inbox[-1]["text"].split()[1]
    wrong = atm(*me, "code", "000000" if code != "000000" else "111111")
    assert wrong.returncode == 0 and json.loads(wrong.stdout)["status"] == "wrong_code"
    assert json.loads(atm(*me, "code", code).stdout)["status"] == "verified"
    bound = atm(*me, "password", stdin="pay-654321\n")
    assert bound.returncode == 0, bound.stderr
    binding = json.loads(bound.stdout)
    assert binding["status"] == "pending" and "binding_token" not in bound.stdout
    assert world.settled() == []
    listed = json.loads(atm(*me, "bindings").stdout)
    assert [b["status"] for b in listed] == ["active"]
    assert json.loads(atm(*me, "unbind", binding["binding_id"]).stdout)["status"] == "revoked"
    # refusals: one line naming what was wrong, exit 1, no traceback
    for args, text in (
        (("scan", "--address", "nonsense"), "not a binding address"),
        (("scan", "--image", str(tmp_path / "missing.png")), "cannot read"),
        (("scan", "--image", str(tmp_path / "app" / "erin.app.json")), "not an image"),
        (("unbind", "B123"), "holds no token"),
    ):
        refused = atm(*me, *args)
        assert refused.returncode == 1 and text in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) == 1
