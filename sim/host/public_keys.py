"""Refuse to run a bank on published keys unless told it is a demo.

The repository carries a whole demo bank (``sim/data/demo-seed.toml``): its LMK, PVK,
``pan_key``, AES BDK and terminal master keys are public, and so are the test keys of the
standards the code is checked against. A host started on them protects nothing: anyone
with a clone can recover every PIN and PAN reference it stores and forge every MAC. So
``atm host`` (and :func:`sim.host.app.build_host`) refuses such a seed unless the operator
says ``--demo``.

A seed counts as public when either

* it declares itself so, ``demo = true`` under ``[host]`` (the demo seed does, and the
  seeds generated from it for the soak and the benchmarks inherit the line), or
* any of its keys (``host.pvk``, ``host.pan_key``, ``host.lmk``, ``host.bdk_aes``, a
  terminal's ``tmk``) is one of the published keys below. This catches a copy of the demo
  seed whose marker was deleted, or a production seed that kept one demo key.

The published keys are recognised by SHA-256 fingerprints of their bytes rather than
stored a second time; ``tests/security/test_oracles.py`` checks that every key of the
repository's seeds is listed, so a new demo key cannot be forgotten here.
"""

from __future__ import annotations

import hashlib

from atm_common.errors import ConfigError
from sim.host.settings import HostKeys, HostSettings

__all__ = ["PUBLISHED_KEYS", "fingerprint", "public_key_names", "refuse_public_keys"]

# SHA-256 of the key bytes -> where the key is published.
PUBLISHED_KEYS: dict[str, str] = {
    "411d3f1d2390ff3f482ac8df4e730780bb081a192f283d2f373138fd101dc8fe": (
        "demo seed pvk; ANSI X9.24-1 test BDK"
    ),
    "9df6018290b48be1dbe153319eca820c406e43554c3623ecc6317e99986fdd5d": "demo seed pan_key",
    "d6f99ae1f2f35082c7cb9ef66f8d66fa1e1e878f9f1ad6b50f31d25fe7364181": "demo seed lmk",
    "3cecfff1fede50b038d353a8ce609b5128d30c4a9684bf332d9f07ce351fbeb5": (
        "demo seed bdk_aes; ANSI X9.24-3 test BDK"
    ),
    "57dc711262c484e3cc0e5d41e68a7f6d1de1aac64e95807eef1ee89725238bc1": (
        "demo seed and terminal/data/sim-terminal.toml TMK of ATM00001"
    ),
    "8bfb93c277d7edf3e76ca7fe9b0213c7e752dc8e2d1a666f6f074a7f2585411d": (
        "ISO 9797-1 MAC algorithm 3 test key"
    ),
    "d4ffb8b77f7d6b26196e9a070e983f6701a4c42dec813d4de1a535d20a7df536": (
        "RFC 4493 AES-CMAC example key"
    ),
}


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


def public_key_names(keys: HostKeys) -> list[str]:
    """The seed names of the keys in ``keys`` that are published (empty: none is)."""
    named: list[tuple[str, bytes | None]] = [
        ("host.pvk", keys.pvk),
        ("host.pan_key", keys.pan_key),
        ("host.lmk", keys.lmk),
        ("host.bdk_aes", keys.bdk_aes),
    ]
    named += [(f"{tid} tmk", t.tmk) for tid, t in sorted(keys.terminals.items())]
    return [name for name, key in named if key and fingerprint(key) in PUBLISHED_KEYS]


def refuse_public_keys(source: str, keys: HostKeys, settings: HostSettings, demo: bool) -> None:
    """Raise :class:`ConfigError` (one line, exit code 2 at the command line) when the seed
    is public and the operator did not say ``--demo``."""
    if demo:
        return
    reasons = ["demo = true"] if settings.demo else []
    names = public_key_names(keys)
    if names:
        reasons.append(f"published: {', '.join(names)}")
    if reasons:
        raise ConfigError(
            source,
            "host",
            f"public demo keys ({'; '.join(reasons)}): anyone with the repository has them;"
            " pass --demo to run on them anyway (demos, tests, benchmarks)",
        )
