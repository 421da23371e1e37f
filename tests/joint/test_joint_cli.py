"""``atm phone joint-...`` against a real ``atm host`` process over HTTPS: a co-owner's
app at a shell, its token (and a candidate's code) read from 0600 files."""

from __future__ import annotations

import json
from pathlib import Path

from atm_common.files import write_private
from sim.pki import make_pki
from tests.joint.helpers import JOINT, TOKENS
from tests.security.test_tls_services import phone, tls_host


def test_binding_a_co_owner_from_the_shell(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", ["ATM00001"])
    tokens = {p: write_private(tmp_path / f"{p}.token", TOKENS[p]) for p in TOKENS}
    code = write_private(tmp_path / "jon.code", "6034\n")
    with tls_host(tmp_path, pki) as url:

        def app(person: str, *args: str) -> object:
            done = phone(
                url, "--ca", str(pki.ca), *args[:1], "--token-file", str(tokens[person]), *args[1:]
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        asked = app("gina", "joint-bind", JOINT, "jon", "ID-DE-0014", "--code-file", str(code))
        assert isinstance(asked, dict) and asked["status"] == "pending"
        pending = app("hugo", "joint-approvals")
        assert isinstance(pending, list) and [p["kind"] for p in pending] == ["bind"]
        for person in ("gina", "hugo", "iris"):
            decided = app(person, "joint-decide", asked["approval_id"], "approve")
        assert isinstance(decided, dict) and decided["status"] == "used"
        kinds = app("jon", "joint-messages")
        assert isinstance(kinds, list) and [m["kind"] for m in kinds] == [
            "joint-outcome",
            "joint-bound",
        ]
        again = phone(
            url,
            "--ca",
            str(pki.ca),
            "joint-decide",
            "--token-file",
            str(tokens["hugo"]),
            asked["approval_id"],
            "approve",
        )
        assert again.returncode == 1 and "409" in again.stderr  # a replayed decision
        tokens["gina"].chmod(0o644)
        open_file = phone(
            url, "--ca", str(pki.ca), "joint-approvals", "--token-file", str(tokens["gina"])
        )
        assert open_file.returncode == 3 and "chmod 600" in open_file.stderr  # config
