"""Terminal configuration: TOML -> frozen dataclasses.

Every error names the file and the dotted key (``kiosk.toml: host.port: must be int``).
Device sections pass their remaining keys to the chosen backend's constructor, so a new
backend needs no change here.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atm_common.errors import ConfigError
from atm_common.keyhash import KeyHashError, parse_key_hash
from atm_common.tls import TlsFiles
from terminal.drivers.base import BACKENDS

DEVICE_KINDS = tuple(BACKENDS)


@dataclasses.dataclass(frozen=True)
class HostConfig:
    """The link to the host: mutual TLS (``tls``), or plain TCP only when ``plain`` says so.

    A config file must choose one (``[host] tls = {ca=..., cert=..., key=...}`` or
    ``plain = true``); :class:`~terminal.app.Terminal` refuses a HostConfig with neither.
    """

    address: str = "127.0.0.1"
    port: int = 8583
    timeout: float = 10.0
    connect_timeout: float = 5.0
    tls: TlsFiles | None = None  # the bank's CA, the terminal's certificate and key
    plain: bool = False
    server_name: str = ""  # the name the host's certificate must carry; default: address


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Customer timeouts in seconds, one per waiting state."""

    pin: float = 30.0
    menu: float = 30.0
    amount: float = 30.0
    balance: float = 30.0
    take_cash: float = 30.0
    take_card: float = 30.0


@dataclasses.dataclass(frozen=True)
class DeviceConfig:
    backend: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SiteLocation:
    lat: float
    lon: float


@dataclasses.dataclass(frozen=True)
class KioskConfig:
    """``[kiosk]``: the customer screen as a web page (terminal.kiosk) on 127.0.0.1:port;
    ``browser`` (e.g. "chromium") starts it in kiosk mode, "" leaves that to a unit."""

    port: int = 8480
    browser: str = ""
    headless: bool = False
    heartbeat: float = 2.0


SUPERVISOR_ROLES = ("replenisher", "technician")  # terminal/supervisor/roles.py FUNCTIONS


@dataclasses.dataclass(frozen=True)
class SupervisorConfig:
    """``[supervisor]``: ``status_interval`` s between status messages to the host (sent
    on every change too; docs/supervisor.md); ``[supervisor.keys]`` role = the salted
    scrypt hash of that role's supervisor key (``scrypt$...``, made by ``atm
    supervisor-key``; never the key itself, nor the old unsalted SHA-256); ``card_prefixes``:
    the PAN prefixes (the staff BIN) of supervisor cards, which open supervisor mode with
    their PIN instead of a customer session (none: no card entry). At the kiosk (F8):
    ``lockout`` s of no key entry after 3 wrong keys, ``idle_timeout`` s without a key
    before supervisor mode is left by itself, ``cassette_capacity`` notes per cassette."""

    status_interval: float = 60.0
    lockout: float = 300.0
    idle_timeout: float = 300.0
    cassette_capacity: int = 2000
    keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
    card_prefixes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TerminalConfig:
    terminal_id: str
    acceptor_id: str = "ATMACCEPTOR0001"
    location: str = "ATM"
    currency: str = "840"
    acquirer_id: str = "100001"
    journal: Path = Path("var/journal.db")
    site: SiteLocation | None = None  # where the terminal stands, when GPS has no fix
    without_dispenser: str = "balance_only"  # or "out_of_service"
    host: HostConfig = HostConfig()
    timeouts: Timeouts = Timeouts()
    devices: Mapping[str, DeviceConfig] = dataclasses.field(default_factory=dict)
    source: str = "<defaults>"
    kiosk: KioskConfig | None = None  # no [kiosk] section: the text console only
    supervisor: SupervisorConfig = SupervisorConfig()


def _typed(source: str, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise ConfigError(source, key, f"must be {kind.__name__}, got {value!r}")
    return value


def _section(source: str, data: Mapping[str, Any], name: str, cls: type) -> Any:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(source, name, "must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(source, f"{name}.{key}", f"unknown key (known: {', '.join(fields)})")
        kind = type(fields[key].default)
        kwargs[key] = _typed(source, f"{name}.{key}", value, kind)
        if kind in (int, float) and kwargs[key] <= 0:
            raise ConfigError(source, f"{name}.{key}", "must be positive")
    return cls(**kwargs)


def parse_config(
    data: Mapping[str, Any], source: str, base_dir: Path | None = None
) -> TerminalConfig:
    known = {"terminal", "host", "timeouts", "devices", "kiosk", "supervisor"}
    for key in data:
        if key not in known:
            raise ConfigError(source, key, f"unknown section (known: {', '.join(sorted(known))})")
    term = data.get("terminal")
    if not isinstance(term, dict):
        raise ConfigError(source, "terminal", "section is required")
    tid = _typed(source, "terminal.id", term.get("id"), str)
    if len(tid) != 8:
        raise ConfigError(source, "terminal.id", "must be exactly 8 characters (ISO 8583 field 41)")
    acceptor = _typed(
        source, "terminal.acceptor_id", term.get("acceptor_id", "ATMACCEPTOR0001"), str
    )
    if len(acceptor) > 15:
        raise ConfigError(source, "terminal.acceptor_id", "must be at most 15 characters")
    location = _typed(source, "terminal.location", term.get("location", "ATM"), str)
    if len(location) > 40:
        raise ConfigError(source, "terminal.location", "must be at most 40 characters")
    currency = _typed(source, "terminal.currency", term.get("currency", "840"), str)
    if len(currency) != 3 or not currency.isdigit():
        raise ConfigError(source, "terminal.currency", "must be a 3-digit ISO 4217 code")
    journal = Path(_typed(source, "terminal.journal", term.get("journal", "var/journal.db"), str))
    if base_dir is not None and not journal.is_absolute():
        journal = base_dir / journal
    devices: dict[str, DeviceConfig] = {}
    raw_devices = data.get("devices", {})
    if not isinstance(raw_devices, dict):
        raise ConfigError(source, "devices", "must be a table")
    for kind, table in raw_devices.items():
        if kind not in DEVICE_KINDS:
            raise ConfigError(
                source, f"devices.{kind}", f"unknown device kind (known: {', '.join(DEVICE_KINDS)})"
            )
        if not isinstance(table, dict) or "backend" not in table:
            raise ConfigError(source, f"devices.{kind}.backend", "is required")
        backend = _typed(source, f"devices.{kind}.backend", table["backend"], str)
        if backend not in BACKENDS[kind]:
            raise ConfigError(
                source,
                f"devices.{kind}.backend",
                f"unknown backend {backend!r} (known: {', '.join(BACKENDS[kind])})",
            )
        devices[kind] = DeviceConfig(backend, {k: v for k, v in table.items() if k != "backend"})
    for kind in ("card_reader", "pinpad", "dispenser"):
        devices.setdefault(kind, DeviceConfig("sim"))
    return TerminalConfig(
        terminal_id=tid,
        acceptor_id=acceptor,
        location=location,
        currency=currency,
        acquirer_id=_typed(source, "terminal.acquirer_id", term.get("acquirer_id", "100001"), str),
        journal=journal,
        site=_site(source, term),
        without_dispenser=_choice(
            source,
            "terminal.without_dispenser",
            term.get("without_dispenser", "balance_only"),
            ("balance_only", "out_of_service"),
        ),
        host=_host(source, data, base_dir),
        timeouts=_section(source, data, "timeouts", Timeouts),
        devices=devices,
        source=source,
        kiosk=_section(source, data, "kiosk", KioskConfig) if "kiosk" in data else None,
        supervisor=_supervisor(source, data),
    )


def _supervisor(source: str, data: Mapping[str, Any]) -> SupervisorConfig:
    """``[supervisor]``: the scalars as any section, plus the role -> key hash table."""
    table = data.get("supervisor", {})
    if not isinstance(table, dict):
        raise ConfigError(source, "supervisor", "must be a table")
    keys = table.get("keys", {})
    if not isinstance(keys, dict):
        raise ConfigError(source, "supervisor.keys", "must be a table (role = key hash)")
    for role, digest in keys.items():
        if role not in SUPERVISOR_ROLES:
            known = ", ".join(SUPERVISOR_ROLES)
            raise ConfigError(source, f"supervisor.keys.{role}", f"unknown role (known: {known})")
        digest = _typed(source, f"supervisor.keys.{role}", digest, str)
        try:
            parse_key_hash(digest)
        except KeyHashError as exc:  # never the value itself: it may be the key
            raise ConfigError(
                source,
                f"supervisor.keys.{role}",
                f"{exc}; make one with `atm supervisor-key --role {role}` and paste its line",
            ) from None
    prefixes = table.get("card_prefixes", [])
    if not isinstance(prefixes, list) or not all(
        isinstance(p, str) and p.isascii() and p.isdigit() and 1 <= len(p) <= 11 for p in prefixes
    ):
        raise ConfigError(
            source,
            "supervisor.card_prefixes",
            f'must be a list of PAN prefixes of 1-11 digits (e.g. ["600999"]), got {prefixes!r}',
        )
    rest = {k: v for k, v in table.items() if k not in ("keys", "card_prefixes")}
    scalars: SupervisorConfig = _section(
        source, {"supervisor": rest}, "supervisor", SupervisorConfig
    )
    return dataclasses.replace(scalars, keys=dict(keys), card_prefixes=tuple(prefixes))


TRANSPORT_CHOICE = (
    "choose the host link's transport: tls = {ca = ..., cert = ..., key = ...}"
    " (mutual TLS) or plain = true (plain TCP, a lab only)"
)


def _host(source: str, data: Mapping[str, Any], base_dir: Path | None) -> HostConfig:
    """``[host]``: the scalars as any section, plus the transport, which must be chosen."""
    table = data.get("host", {})
    if not isinstance(table, dict):
        raise ConfigError(source, "host", "must be a table")
    rest = {k: v for k, v in table.items() if k != "tls"}
    config: HostConfig = _section(source, {"host": rest}, "host", HostConfig)
    if "tls" not in table:
        if not config.plain:
            raise ConfigError(source, "host", TRANSPORT_CHOICE)
        return config
    if config.plain:
        raise ConfigError(source, "host.plain", "cannot be true with host.tls: choose one")
    raw = table["tls"]
    if not isinstance(raw, dict):
        raise ConfigError(source, "host.tls", "must be a table {ca = ..., cert = ..., key = ...}")
    paths: dict[str, Path] = {}
    for name in raw:
        if name not in ("ca", "cert", "key"):
            raise ConfigError(source, f"host.tls.{name}", "unknown key (known: ca, cert, key)")
    for name in ("ca", "cert", "key"):
        if name not in raw:  # the host requires a client certificate: all three, always
            raise ConfigError(source, f"host.tls.{name}", "is required")
        path = Path(_typed(source, f"host.tls.{name}", raw[name], str))
        paths[name] = base_dir / path if base_dir is not None and not path.is_absolute() else path
    return dataclasses.replace(config, tls=TlsFiles(paths["ca"], paths["cert"], paths["key"]))


def _site(source: str, term: Mapping[str, Any]) -> SiteLocation | None:
    if "site_lat" not in term and "site_lon" not in term:
        return None
    lat = _typed(source, "terminal.site_lat", term.get("site_lat"), float)
    lon = _typed(source, "terminal.site_lon", term.get("site_lon"), float)
    if not (-90 <= lat <= 90):
        raise ConfigError(source, "terminal.site_lat", "must be between -90 and 90")
    if not (-180 <= lon <= 180):
        raise ConfigError(source, "terminal.site_lon", "must be between -180 and 180")
    return SiteLocation(lat, lon)


def _choice(source: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(source, key, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def load_config(path: Path) -> TerminalConfig:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    return parse_config(data, str(path), path.parent)
