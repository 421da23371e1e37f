"""Key injection for simulated terminals: what a key-loading facility would put into a
terminal's PIN pad, read from the host seed (the demo plays both parties)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atm_common.crypto.dukpt import aes_initial_key
from atm_common.errors import ConfigError
from sim.host.seed import read_toml


def pinpad_options(seed: Path, terminal_id: str) -> dict[str, Any]:
    """SimPinPad/EppEmulator options holding ``terminal_id``'s key set from ``seed``."""
    data = read_toml(seed)
    terminals = {t["id"]: t for t in data.get("terminals", [])}
    if terminal_id not in terminals:
        raise ConfigError(str(seed), "terminals", f"no terminal {terminal_id}")
    term = terminals[terminal_id]
    mode = term.get("security", "tdes")
    if mode == "tdes":
        return {"security": "tdes", "tmk": term["tmk"], "pin_key": None}
    bdk = bytes.fromhex(data["host"]["bdk_aes"])
    ik = aes_initial_key(bdk, bytes.fromhex(term["ik_id"]))
    return {"security": mode, "ik": ik.hex().upper(), "ik_id": term["ik_id"], "pin_key": None}


def terminal_for(seed: Path, security: str) -> str:
    """The first terminal in ``seed`` using ``security``."""
    for term in read_toml(seed).get("terminals", []):
        if term.get("security", "tdes") == security:
            return str(term["id"])
    raise ConfigError(str(seed), "terminals", f"no terminal uses {security}")
