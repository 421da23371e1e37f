"""The alarm center simulator: where the bank's host raises duress alarms (seed 003).

``AlarmCenter`` / ``serve`` run the HTTP service (posts signed by the host, reads with
the operator's token); ``list_alarms`` / ``list_conflicts`` and their ``format_*`` read
its store for ``atm alarm-center list|conflicts`` without disturbing a running server.
"""

from sim.alarm_center.contract import (
    Alarm,
    AlarmError,
    AlarmValidationError,
    Evidence,
    Update,
    validate_alarm,
    validate_update,
)
from sim.alarm_center.reading import (
    AlarmStoreError,
    format_alarms,
    format_conflicts,
    list_alarms,
    list_conflicts,
)
from sim.alarm_center.server import MAX_BODY, AlarmCenter, serve
from sim.alarm_center.store import AlarmStore, Outcome

__all__ = [
    "MAX_BODY",
    "Alarm",
    "AlarmCenter",
    "AlarmError",
    "AlarmStore",
    "AlarmStoreError",
    "AlarmValidationError",
    "Evidence",
    "Outcome",
    "Update",
    "format_alarms",
    "format_conflicts",
    "list_alarms",
    "list_conflicts",
    "serve",
    "validate_alarm",
    "validate_update",
]
