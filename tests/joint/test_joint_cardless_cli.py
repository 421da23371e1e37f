"""``atm phone`` against a real ``atm host`` process over HTTPS: a cardless reservation
on a joint account, confirmed with the password and Gina's own code (0600 files, never
argv, never in the host's log), frozen only once Hugo approves on his app."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from atm_common.files import write_private
from sim.pki import Pki, make_pki
from sim.services import service_process
from tests.cardless.helpers import face
from tests.host.helpers import DEMO_SEED
from tests.joint.helpers import CODES, JOINT, TOKENS
from tests.security.test_tls_services import phone

GINA_PHONE = "+4915100000011"


@contextmanager
def _host(workdir: Path, pki: Pki) -> Iterator[str]:
    """The demo bank with Gina's face enrolled too (from the demo's photo of Frank)."""
    seed = workdir / "seed.toml"
    text = DEMO_SEED.read_text(encoding="utf-8").replace(
        'id = "gina"\n', f'id = "gina"\nface_photo = "{face("obama.jpg")}"\n', 1
    )
    seed.write_text(text.replace('"faces/', f'"{DEMO_SEED.parent}/faces/'), encoding="utf-8")
    args = ["--demo", "--db", str(workdir / "host.db"), "--seed", str(seed)]
    args += ["--tls-dir", str(pki.directory), "--api-port", "0", "--sms-inbox"]
    args += ["--log", str(workdir / "host.log")]
    with service_process("host", args) as host:
        assert host.process.stdout is not None
        line = host.process.stdout.readline().strip()
        assert line.startswith("api on https://"), line
        yield line.split()[-1]


def test_a_joint_reservation_from_the_shell(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", ["ATM00001"])
    password = write_private(tmp_path / "pw", "1470\n")
    code = write_private(tmp_path / "code", CODES["gina"] + "\n")
    hugo = write_private(tmp_path / "hugo.token", TOKENS["hugo"])
    with _host(tmp_path, pki) as url:
        base = ["--ca", str(pki.ca), "--phone", GINA_PHONE]

        def step(*args: str, rc: int = 0) -> Any:
            done = phone(url, *base, *args)
            assert done.returncode == rc, done.stderr
            return json.loads(done.stdout)

        rid = step("request")["request_id"]
        texts = [m["text"] for m in step("messages")]
        sms = re.search(r"\b(\d{6})\b", texts[-1])
        assert sms is not None
        step("verify", rid, sms.group(1))
        assert step("face", rid, str(face("obama.jpg")))["match"] is True
        qid = step("quote", rid, JOINT, "10000", "code")["quote_id"]
        plain = step("confirm", rid, qid, rc=1)
        assert plain["status"] == 403
        asked = step(
            "confirm",
            rid,
            qid,
            "--joint",
            "--password-file",
            str(password),
            "--code-file",
            str(code),
        )
        assert asked["status"] == "awaiting_approval" and asked["reservation"] is None
        db = sqlite3.connect(tmp_path / "host.db")
        assert db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
        decided = phone(
            url,
            "--ca",
            str(pki.ca),
            "joint-decide",
            "--token-file",
            str(hugo),
            asked["approval"]["approval_id"],
            "approve",
        )
        assert decided.returncode == 0, decided.stderr
        status = step("joint-reservation", rid)
        assert status["status"] == "reserved" and status["reservation"]["status"] == "active"
        held = db.execute(
            "SELECT amount + fee FROM reservations WHERE account_id = ? AND status = 'active'",
            (JOINT,),
        ).fetchone()
        assert held == (10_000 + status["reservation"]["fee"],)
        db.close()
    log = (tmp_path / "host.log").read_text(encoding="utf-8")
    for secret in ("1470", CODES["gina"]):
        assert re.search(rf"\b{secret}\b", log) is None
