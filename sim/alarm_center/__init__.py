"""The alarm center simulator: where the bank's host raises duress alarms (seed 003).

``AlarmCenter`` / ``serve`` run the HTTP service; ``list_alarms`` / ``format_alarms``
read its store for ``atm alarm-center list`` without disturbing a running server.
"""

from sim.alarm_center.contract import (
    Alarm,
    AlarmError,
    AlarmValidationError,
    Evidence,
    validate_alarm,
)
from sim.alarm_center.server import MAX_BODY, AlarmCenter, serve
from sim.alarm_center.store import AlarmStore, AlarmStoreError, format_alarms, list_alarms

__all__ = [
    "MAX_BODY",
    "Alarm",
    "AlarmCenter",
    "AlarmError",
    "AlarmStore",
    "AlarmStoreError",
    "AlarmValidationError",
    "Evidence",
    "format_alarms",
    "list_alarms",
    "serve",
    "validate_alarm",
]
