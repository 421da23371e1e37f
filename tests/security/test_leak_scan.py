"""Run the whole demo, then look for secrets in everything it wrote and printed.

Searched for: every demo PIN (as a token, not inside longer digit runs), every full PAN
in the seed, every key in the seed and the DUKPT initial keys derived from it, and any
bare 16- or 32-hex-digit token (the shape of a PIN block or a clear key). Allowed: the
working keys' cryptograms under the host's LMK, which is how the host stores them.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from atm_common.crypto.dukpt import aes_initial_key
from sim.scenarios.demo import DEMO_SEED
from sim.scenarios.scripts import DEMO
from terminal.drivers.pinpad.sim import Pin

pytestmark = pytest.mark.e2e

HEX_TOKEN = re.compile(rb"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{32}|[0-9A-Fa-f]{16})(?![0-9A-Fa-f])")


def _secrets() -> tuple[list[bytes], list[bytes], list[bytes]]:
    seed = tomllib.loads(DEMO_SEED.read_text())
    cards = seed["cards"] + seed.get("supervisor_cards", [])  # staff cards: the demo's too
    pans = [c["pan"].encode() for c in cards]
    pins = {c["pin"] for c in cards}
    for scenario in DEMO:
        pins |= {e._digits for e in scenario.entries if isinstance(e, Pin)}
    keys = [seed["host"][k] for k in ("pvk", "pan_key", "lmk", "bdk_aes")]
    keys += [t["tmk"] for t in seed["terminals"] if "tmk" in t]
    bdk = bytes.fromhex(seed["host"]["bdk_aes"])
    keys += [
        aes_initial_key(bdk, bytes.fromhex(t["ik_id"])).hex()
        for t in seed["terminals"]
        if "ik_id" in t
    ]
    return pans, [p.encode() for p in pins], [k.upper().encode() for k in keys]


def _allowed_cryptograms(workdir: Path) -> set[bytes]:
    conn = sqlite3.connect(workdir / "host.db")
    rows = conn.execute("SELECT tpk_under_lmk, tak_under_lmk FROM terminal_keys").fetchall()
    conn.close()
    return {v.encode() for row in rows for v in row}


@pytest.mark.parametrize("security", ["tdes", "aes-dukpt"])
def test_no_pin_block_pan_or_key_anywhere(tmp_path: Path, security: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "atm",
            "--log-level",
            "debug",
            "demo",
            "--json",
            "--security",
            security,
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    pans, pins, keys = _secrets()
    allowed = _allowed_cryptograms(tmp_path)
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert {p.name for p in written} >= {"host.db", "journal.db", "host.log"}
    blobs = {f"file {p.name}": p.read_bytes() for p in written}
    blobs["stdout"], blobs["stderr"] = run.stdout, run.stderr
    assert b"DEBUG" in run.stderr  # the scan saw real debug logging, not silence
    for where, data in blobs.items():
        upper = data.upper()
        for pan in pans:
            assert pan not in data, f"full PAN in {where}"
        for key in keys:
            assert key not in upper, f"a seed key in {where}"
        for pin in pins:
            # a PIN as a token of its own, not four digits inside a longer number, a hex
            # string or base64 (sealed evidence: random text that holds any 4 digits at times)
            assert not re.search(rb"(?<![0-9A-Za-z+/])" + pin + rb"(?![0-9A-Za-z+/=])", data), (
                f"PIN {pin!r} in {where}"
            )
        tokens = {t.upper() for t in HEX_TOKEN.findall(data)} - allowed
        assert not tokens, f"PIN-block or key shaped tokens in {where}: {sorted(tokens)[:3]}"
