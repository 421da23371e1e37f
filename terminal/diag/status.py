"""``atm diag status``: every configured device, opened and asked how it is.

Why: it is the field engineer's first command on site. For each device section of the
terminal's config it builds the device, opens it, and reports its kind, backend, state,
what it says about itself (:meth:`~terminal.drivers.base.Device.info`: model, firmware,
serial number, port, reader and ATR, GPS talker and fix, camera resolution ...), its
counters and its last error. Nothing here knows a backend: each one answers through those
Device hooks.

A device that cannot be opened or does not answer is a finding, never a crash: it is
listed with its error and state ``offline`` (``fault`` when it answered with a fault,
``error`` when its config section cannot even build it, for example a backend package
that is not installed). Every configured device is listed, in the order of
:data:`~terminal.config.DEVICE_KINDS`.

JSON shape (:func:`status_report`)::

    {"terminal": {"id": "ATM00001", "location": "...", "config": "kiosk.toml",
                  "checked_at": "2026-01-01T12:00:00Z"},
     "devices": [{"kind": "pinpad", "backend": "epp", "state": "ok", "ok": true,
                  "info": {"port": "/dev/ttyUSB1", "model": "ZT588", "serial": "...",
                           "firmware": "...", "security": "tdes", "pin_key_slot": 1},
                  "counters": {}, "error": null}, ...],
     "ok": true}

``ok`` is true when every device's state is ``ok``; ``atm diag status`` exits 0 then,
else 1. :func:`format_report` is the human view. No printing here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError, ConfigError, RemoteProtocolError
from terminal.config import DEVICE_KINDS, DeviceConfig, TerminalConfig
from terminal.drivers.base import Device, DeviceStatus, InfoValue, backend_class
from terminal.errors import DeviceFault, DeviceTimeout, DeviceUnavailable
from terminal.supervisor.attention import attention_for

log = logging.getLogger(__name__)
T = TypeVar("T")

OK = DeviceStatus.OK.value
OFFLINE = DeviceStatus.OFFLINE.value
FAULT = DeviceStatus.FAULT.value
ERROR = "error"  # not a DeviceStatus: the device could not be built, or its driver failed

# Errors meaning "the device does not answer" (or not intelligibly): state offline.
_NO_ANSWER = (DeviceTimeout, DeviceUnavailable, RemoteProtocolError)


@dataclasses.dataclass
class DeviceReport:
    """What ``atm diag status`` found out about one configured device."""

    kind: str
    backend: str
    state: str = ERROR
    info: dict[str, InfoValue] = dataclasses.field(default_factory=dict)
    counters: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == OK

    def as_dict(self) -> dict[str, Any]:
        attention, actor = attention_for(self.kind, self.state, self.error)
        return {
            "kind": self.kind,
            "backend": self.backend,
            "state": self.state,
            "ok": self.ok,
            "attention": attention,  # the device status list (docs/supervisor.md)
            "actor": actor,
            "info": dict(self.info),
            "counters": dict(self.counters),
            "error": self.error,
        }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AtmError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"  # a driver bug: still a finding, not a crash


def _state_after(exc: BaseException) -> str:
    if isinstance(exc, _NO_ANSWER):
        return OFFLINE
    if isinstance(exc, DeviceFault):
        return FAULT
    return ERROR


class _Check:
    """One device's check: records the first failure, keeps going where that is safe."""

    def __init__(self, report: DeviceReport) -> None:
        self.report = report
        self.failed = False

    def attempt(self, what: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except Exception as exc:  # any failure of one device is reported, never raised
            if not isinstance(exc, AtmError):
                log.debug("%s: %s failed", self.report.kind, what, exc_info=True)
            log.info("%s: %s failed: %s", self.report.kind, what, exc)
            if not self.failed:
                self.failed = True
                self.report.state = _state_after(exc)
                self.report.error = _describe(exc)
            return None


def build_device(config: TerminalConfig, kind: str, section: DeviceConfig, clock: Clock) -> Device:
    """Build (not open) the device of one config section; a bad section is a ConfigError."""
    cls = backend_class(kind, section.backend)
    options: dict[str, Any] = dict(section.options)
    options.setdefault("clock", clock)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(
            config.source, f"devices.{kind}", f"bad option for {section.backend}: {exc}"
        ) from exc


def check_device(
    config: TerminalConfig, kind: str, section: DeviceConfig, clock: Clock
) -> DeviceReport:
    """Build, open and question one device, then close it. Never raises for the device."""
    report = DeviceReport(kind, section.backend)
    check = _Check(report)
    device = check.attempt("build", lambda: build_device(config, kind, section, clock))
    if device is None:
        return report
    try:
        check.attempt("open", device.open)
        if not check.failed:
            report.info = check.attempt("info", device.info) or {}
        if not check.failed:
            status = check.attempt("status", device.status)
            if status is not None:
                report.state = status.value
        report.counters = check.attempt("counters", device.counter_values) or {}
        last_error = check.attempt("last_error", device.last_error)
        if report.error is None:
            report.error = last_error
    finally:
        check.attempt("close", device.close)
    log.debug("%s (%s): %s", kind, section.backend, report.state)
    return report


def status_report(config: TerminalConfig, clock: Clock | None = None) -> dict[str, Any]:
    """``atm diag status``: every configured device checked in turn (see module doc)."""
    clock = clock if clock is not None else SystemClock()
    checked_at = clock.now().isoformat(timespec="seconds").replace("+00:00", "Z")
    reports = [
        check_device(config, kind, config.devices[kind], clock)
        for kind in DEVICE_KINDS
        if kind in config.devices
    ]
    return {
        "terminal": {
            "id": config.terminal_id,
            "location": config.location,
            "config": config.source,
            "checked_at": checked_at,
        },
        "devices": [r.as_dict() for r in reports],
        "ok": all(r.ok for r in reports),
    }


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return ", ".join(_text(v) for v in value) or "none"
    if value is None:
        return "-"
    return str(value)


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text: the terminal, one block per device, a summary line."""
    term = report["terminal"]
    head = [
        ("terminal", f"{term['id']} ({term['location']})"),
        ("config", term["config"]),
        ("checked at", term["checked_at"]),
    ]
    blocks: list[tuple[str, list[tuple[str, str]]]] = []
    for device in report["devices"]:
        rows = [("backend", device["backend"]), ("state", device["state"])]
        if device.get("attention", "none") != "none":
            rows.append(("attention", f"{device['attention']} ({device['actor']})"))
        if device["error"]:
            rows.append(("error", device["error"]))
        rows += [(key, _text(value)) for key, value in device["info"].items()]
        if device["counters"]:
            counters = "  ".join(f"{k}={v}" for k, v in device["counters"].items())
            rows.append(("counters", counters))
        blocks.append((device["kind"], rows))
    width = max(len(label) for _, rows in [("", head), *blocks] for label, _ in rows)
    lines = [f"{label:<{width + 2}}  {value}" for label, value in head]
    for kind, rows in blocks:
        lines += ["", kind]
        lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    lines += ["", summary(report)]
    return "\n".join(lines)


def summary(report: dict[str, Any]) -> str:
    """``4 devices, all ok`` or ``4 devices, 1 not ok: dispenser offline``."""
    devices = report["devices"]
    bad = [f"{d['kind']} {d['state']}" for d in devices if not d["ok"]]
    count = f"{len(devices)} device{'s' if len(devices) != 1 else ''}"
    if not bad:
        return f"{count}, all ok"
    return f"{count}, {len(bad)} not ok: {', '.join(bad)}"
