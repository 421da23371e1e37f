"""Start the device emulators on real pseudo-terminals: ``atm sim devices``.

Each emulator runs behind a :class:`~sim.devices.pty.PtyBridge`; the terminal opens the
printed ``/dev/pts/N`` paths exactly as it would open ``/dev/ttyUSB0`` on a kiosk. The
PIN pad emulator is injected with the terminal's keys from the host seed (the launcher
plays the key-loading facility).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from atm_common.clock import Clock, SystemClock
from sim.devices.epp import EppEmulator
from sim.devices.gps import GpsEmulator
from sim.devices.key_injection import pinpad_options
from sim.devices.lcdm import LcdmEmulator
from sim.devices.printer import EscPosEmulator
from sim.devices.pty import PtyBridge
from sim.pki import Pki
from terminal.supervisor.roles import key_digest

# (denomination, notes) per cassette: 10,000.00, the seed's opening cash for a terminal, so
# the host's books and the machine agree at the start of the day (a balancing finds only
# what really went missing)
DEFAULT_CASSETTES: tuple[tuple[int, int], ...] = ((2000, 250), (5000, 100))
# The demo's supervisor keys (typed on the PIN pad after F8) and the demo seed's staff BIN
# (its [[supervisor_cards]]): a real machine has its own keys, kept only as salted hashes
# (`atm supervisor-key`); the config written here hashes these afresh (a new salt each time).
DEMO_SUPERVISOR_KEYS = {"replenisher": "246810", "technician": "135790"}
STAFF_BIN = "600999"


@dataclasses.dataclass
class EmulatedDevices:
    dispenser: LcdmEmulator
    pinpad: EppEmulator
    gps: GpsEmulator
    bridges: dict[str, PtyBridge]
    cassettes: Sequence[tuple[int, int]]
    printer: EscPosEmulator = dataclasses.field(default_factory=EscPosEmulator)

    @property
    def paths(self) -> dict[str, str]:
        return {name: bridge.path for name, bridge in self.bridges.items()}

    def device_config(self) -> dict[str, dict[str, Any]]:
        """``[devices.*]`` sections pointing a terminal at these ptys."""
        return {
            "dispenser": {
                "backend": "lcdm",
                "url": self.bridges["dispenser"].path,
                "denominations": [d for d, _ in self.cassettes],
                "counts": [n for _, n in self.cassettes],
                "parity": "N",  # Linux ptys refuse parity settings; a real LCDM wants 8E1
                "poll_interval": 0.05,
            },
            "pinpad": {"backend": "epp", "url": self.bridges["pinpad"].path},
            "gps": {"backend": "nmea", "url": self.bridges["gps"].path},
            "printer": {"backend": "escpos", "url": self.bridges["printer"].path},
        }


@contextlib.contextmanager
def emulators_on_ptys(
    seed: Path,
    terminal_id: str,
    *,
    clock: Clock | None = None,
    cassettes: Sequence[tuple[int, int]] = DEFAULT_CASSETTES,
    position: tuple[float, float] = (52.5200, 13.4050),
) -> Iterator[EmulatedDevices]:
    """Run dispenser, EPP, GPS and receipt printer emulators on ptys until the block exits."""
    clock = clock or SystemClock()
    keys = {k: v for k, v in pinpad_options(seed, terminal_id).items() if v is not None}
    devices = EmulatedDevices(
        dispenser=LcdmEmulator(cassettes, clock, seconds_per_note=0.0),
        pinpad=EppEmulator(clock, **keys),
        gps=GpsEmulator(clock, lat=position[0], lon=position[1], interval=0.5),
        bridges={},
        cassettes=cassettes,
    )
    with contextlib.ExitStack() as stack:
        for name in ("dispenser", "pinpad", "gps", "printer"):
            bridge = stack.enter_context(PtyBridge(getattr(devices, name), name))
            devices.bridges[name] = bridge
        yield devices


# The virtual PC/SC reader ``atm sim devices`` starts (vpcd's first slot, through pcscd).
PCSC_READER: dict[str, Any] = {
    "backend": "pcsc",
    "reader": "Virtual PCD 00 00",
    "read_timeout": 3.0,
    "poll_interval": 0.2,
}
SIM_READER: dict[str, Any] = {"backend": "sim"}


def kiosk_toml(
    devices: EmulatedDevices,
    terminal_id: str,
    host_port: int = 8583,
    *,
    tls_dir: Path | None,
    card_reader: dict[str, Any] | None = None,
) -> str:
    """A terminal config (TOML) using the emulated devices.

    ``tls_dir`` (a CA directory made by ``atm pki init``): the link is mutual TLS with the
    terminal's certificate from there (absolute paths); None writes ``plain = true``.
    ``card_reader``: the ``[devices.card_reader]`` section (:data:`PCSC_READER` for the
    virtual PC/SC reader a person puts cards into; default the in-process sim reader).
    """
    lines = [
        "[terminal]",
        f'id = "{terminal_id}"',
        'location = "Main Street branch"',
        "site_lat = 52.52",
        "site_lon = 13.405",
        "",
        "[host]",
        'address = "127.0.0.1"',
        f"port = {host_port}",
    ]
    if tls_dir is not None:
        files = Pki(tls_dir.resolve()).terminal(terminal_id)
        ca, cert, key = (json.dumps(str(path)) for path in (files.ca, files.cert, files.key))
        lines.append(f"tls = {{ ca = {ca}, cert = {cert}, key = {key} }}")
    else:
        lines.append("plain = true  # plain TCP: the host must run with --plain")
    lines.append("")
    sections = {**devices.device_config(), "card_reader": card_reader or SIM_READER}
    for kind, section in sections.items():
        lines.append(f"[devices.{kind}]")
        for key, value in section.items():
            rendered = f'"{value}"' if isinstance(value, str) else str(value)
            lines.append(f"{key} = {rendered}")
        lines.append("")
    lines += [
        "# supervisor mode: F8 then a demo key (replenisher 246810, technician 135790), or",
        "# a demo staff card and its PIN (docs/supervisor.md)",
        "[supervisor]",
        f'card_prefixes = ["{STAFF_BIN}"]',
        "[supervisor.keys]",
        *(f'{role} = "{key_digest(key)}"' for role, key in DEMO_SUPERVISOR_KEYS.items()),
        "",
    ]
    return "\n".join(lines)
