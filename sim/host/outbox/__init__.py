"""The host's durable outbox: alarms, SMS and bills that must reach the outside world.

Why an outbox and not a direct call: a duress alarm is raised while the host authorises
a withdrawal. Posting it to the alarm center from inside that authorisation would either
hold the terminal hostage to a slow peer or lose the alarm when the peer is down. So
:func:`enqueue` writes the message into the host database *inside the caller's SQLite
transaction* (the alarm commits or rolls back with the authorisation that raised it) and
:class:`OutboxWorker` delivers it later, from the same file, after any crash.

Delivery rules: entries for one destination go out in id order (a later message never
overtakes an earlier one); a failure stops that destination only and schedules a retry
with exponential backoff on the injected clock. Nothing is ever dropped: an entry stays
``pending`` and is retried forever with its attempts counted. ``failed`` is reserved for
a payload the peer says it will never accept (:class:`PermanentDeliveryError`, e.g. a 400
from the alarm center, or its 409 when it holds other content under the alarm's id:
:class:`AlarmConflictError`), and is logged at ERROR for a person to look at. Receivers
must be idempotent (the alarm center is, by ``alarm_id``), because a delivery whose
answer was lost is delivered again.

The package is cut along those concerns:

* :mod:`sim.host.outbox.store`: the durable queue (schema, :func:`enqueue`,
  :func:`entries`), its errors and its retry :class:`Backoff`;
* :mod:`sim.host.outbox.worker`: :class:`OutboxWorker`, the async loop that delivers
  due entries in order and records each outcome;
* :mod:`sim.host.outbox.alarm_delivery`: the HTTP peers of a duress alarm,
  :class:`AlarmDeliverer` (the alarm center) and :class:`CarrierLocator` (its prepare
  hook), both signing their requests with the host's key. SMS have no network here:
  their deliverer is the simulated gateway in :mod:`sim.host.cardless_phone`.
"""

from sim.host.outbox.alarm_delivery import AlarmConflictError, AlarmDeliverer, CarrierLocator
from sim.host.outbox.store import (
    FORBIDDEN_KEYS,
    KINDS,
    SCHEMA,
    Backoff,
    OutboxEntry,
    OutboxError,
    Payload,
    PermanentDeliveryError,
    RetryableDeliveryError,
    enqueue,
    ensure_schema,
    entries,
)
from sim.host.outbox.worker import Deliverer, DrainResult, OutboxWorker, Preparer

__all__ = [
    "FORBIDDEN_KEYS",
    "KINDS",
    "SCHEMA",
    "AlarmConflictError",
    "AlarmDeliverer",
    "Backoff",
    "CarrierLocator",
    "Deliverer",
    "DrainResult",
    "OutboxEntry",
    "OutboxError",
    "OutboxWorker",
    "Payload",
    "PermanentDeliveryError",
    "Preparer",
    "RetryableDeliveryError",
    "enqueue",
    "ensure_schema",
    "entries",
]
