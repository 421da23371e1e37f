"""``atm diag gps``: the configured receiver's current fix, or a recorded NMEA log replayed.

Why: a field engineer needs to tell "no sky view" from "no receiver" from "bad cable"
without a debugger, and to check a log captured on site (``cat /dev/ttyUSB0 > site.nmea``)
on a laptop. The replay goes through the same :class:`NmeaStream` and :class:`FixTracker`
as the driver, so what it shows is what the terminal would have seen.

JSON shape of one fix (``fix_record``)::

    {"time": "2025-06-14T08:59:58Z", "lat": 50.1109, "lon": 8.6821, "alt": 112.4,
     "fix": true, "quality": 1, "satellites": 7, "hdop": 1.2}
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError
from terminal.config import TerminalConfig
from terminal.drivers.base import create_device
from terminal.drivers.gps.base import Fix, Gps
from terminal.drivers.gps.nmea import NmeaGps
from terminal.drivers.gps.nmea_stream import FixTracker, NmeaStream, StreamCounters
from terminal.errors import DeviceError

log = logging.getLogger(__name__)

_CHUNK = 4096


def _iso(fix: Fix) -> str:
    spec = "milliseconds" if fix.time.microsecond else "seconds"
    return fix.time.isoformat(timespec=spec).replace("+00:00", "Z")


def fix_record(fix: Fix) -> dict[str, Any]:
    """One fix as the JSON object ``atm diag gps`` prints (position 0/0 when no fix)."""
    return {
        "time": _iso(fix),
        "lat": fix.lat,
        "lon": fix.lon,
        "alt": fix.alt,
        "fix": fix.valid,
        "quality": fix.quality,
        "satellites": fix.satellites,
        "hdop": fix.hdop,
    }


def replay_fixes(
    path: str | Path, clock: Clock | None = None, counters: StreamCounters | None = None
) -> Iterator[dict[str, Any]]:
    """One :func:`fix_record` per receiver epoch of the log at ``path``, in order.

    ``clock`` only dates GGA sentences seen before any RMC (default: the system clock).
    ``counters``, if given, is filled in as the log is read (checksum errors, ignored ...).
    Raises :class:`ConfigError` naming the file if it cannot be read.
    """
    stream = NmeaStream()
    if counters is not None:
        stream.counters = counters
    tracker = FixTracker(clock if clock is not None else SystemClock())
    try:
        with Path(path).open("rb") as log_file:
            while chunk := log_file.read(_CHUNK):
                for report in stream.feed(chunk):
                    closed = tracker.update(report)
                    if closed is not None:
                        yield fix_record(closed)
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read NMEA log: {exc.strerror or exc}") from exc
    last = tracker.finish()
    if last is not None:
        yield fix_record(last)
    log.debug("gps replay of %s: %s", path, stream.counters)


def replay_json_lines(path: str | Path, clock: Clock | None = None) -> Iterator[str]:
    """``atm diag gps --replay FILE --json``: one JSON document per line, per epoch."""
    for record in replay_fixes(path, clock):
        yield json.dumps(record)


def current_fix(gps: Gps, clock: Clock | None = None, timeout: float = 3.0) -> dict[str, Any]:
    """Read an opened receiver until it has a valid fix or ``timeout`` s pass; report.

    The report: ``status`` (ok/degraded/offline), ``fix`` (a :func:`fix_record` of the
    valid fix, else None), ``age`` in seconds, and for an NMEA receiver ``last`` (what it
    last said, even "no fix") and its line ``counters``.
    """
    clock = clock if clock is not None else SystemClock()
    deadline = clock.monotonic() + timeout
    fix = gps.fix()
    # Each NMEA read waits on the port, so this loop does not spin; a non-blocking
    # backend (the in-process sim) answers at once and is asked only once.
    while fix is None and gps.blocking and clock.monotonic() < deadline:
        fix = gps.fix()
    report: dict[str, Any] = {
        "device": repr(gps),
        "status": gps.status().value,
        "fix": fix_record(fix) if fix is not None else None,
        "age": round(gps.age(fix), 3) if fix is not None else None,
    }
    if isinstance(gps, NmeaGps):
        last = gps.last_fix
        report["last"] = fix_record(last) if last is not None else None
        report["counters"] = dataclasses.asdict(gps.counters)
    return report


def diagnose(
    config: TerminalConfig, clock: Clock | None = None, timeout: float = 3.0
) -> dict[str, Any]:
    """``atm diag gps``: open the configured receiver, report :func:`current_fix`, close it.

    A receiver that cannot be opened or fails is reported (``status`` offline and the
    ``error``), not raised: that is the diagnosis. No GPS configured is a ConfigError.
    """
    section = config.devices.get("gps")
    if section is None:
        raise ConfigError(config.source, "devices.gps", "no GPS is configured")
    clock = clock if clock is not None else SystemClock()
    options: dict[str, Any] = {"clock": clock, **section.options}
    device = create_device("gps", section.backend, **options)
    if not isinstance(device, Gps):
        raise ConfigError(config.source, "devices.gps.backend", "not a GPS backend")
    try:
        with device:
            return current_fix(device, clock, timeout)
    except DeviceError as exc:
        log.warning("gps diagnosis: %s", exc)
        return {"device": repr(device), "status": "offline", "fix": None, "error": str(exc)}
