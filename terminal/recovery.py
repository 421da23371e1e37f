"""Crash recovery: after a restart, settle the last session before serving anyone.

The journal says how far the last session got (NDC's "last transaction status" is the
model); the dispenser says whether notes are still waiting; the store-and-forward queue
says whether a reversal was already owed. From those, recovery decides what the host must
be told: nothing, a full reversal (0400), or an advice of what was really dispensed
(0420 with field 95). It only queues; the queue delivers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from host_link.codec import Message
from terminal import transactions
from terminal.config import TerminalConfig
from terminal.drivers.dispenser.base import Dispenser
from terminal.errors import DeviceError
from terminal.journal import Entry, Journal
from terminal.saf import SafQueue

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Recovery:
    session: str | None
    action: str  # clean, nothing_owed, complete, reversal, advice, already_queued
    detail: str = ""
    retracted: int = 0


def _events(entries: list[Entry]) -> dict[str, Entry]:
    """Last entry of each event name."""
    return {e.event: e for e in entries}


def _queued_for(saf: SafQueue, request: Message) -> bool:
    key = f"{request['t']}{request['11']}{request['7']}"
    return any(e.message.get("90", "").startswith(key) for e in saf.entries())


def recover(
    journal: Journal,
    saf: SafQueue,
    dispenser: Dispenser,
    config: TerminalConfig,
    stamp: Callable[[Message], Message],
) -> Recovery:
    """Settle the last session if it did not end; ``stamp`` gives a message its STAN etc."""
    session, entries = journal.last_session()
    if session is None or any(e.event == "session_end" for e in entries):
        return Recovery(session, "clean")
    events = _events(entries)
    request_entry = events.get("authorisation_request")
    if request_entry is None:
        return _done(journal, Recovery(session, "nothing_owed", "no withdrawal was requested"))
    request: Message = dict(request_entry.data["request"])
    if _queued_for(saf, request):
        return _done(journal, Recovery(session, "already_queued", "reversal already in SAF"))
    answer = events.get("authorisation")
    if answer is not None and answer.seq > request_entry.seq and answer.data.get("code") != "00":
        return _done(journal, Recovery(session, "nothing_owed", f"declined {answer.data['code']}"))
    approved = int(request["4"])

    def owe(dispensed: int, why: str, retracted: int = 0) -> Recovery:
        message = stamp(transactions.reversal(config, request, dispensed))
        saf.enqueue(message)
        action = "advice" if dispensed else "reversal"
        return _done(journal, Recovery(session, action, why, retracted))

    if "cash_taken" in events:
        taken = int(events["cash_taken"].data.get("amount", 0))
        if taken < approved:
            return owe(taken, f"customer took {taken} of {approved}")
        return _done(journal, Recovery(session, "complete", "customer took the cash"))
    if "cash_retracted" in events:
        return owe(0, "cash was retracted")
    if "dispensing" in events:
        try:
            pending = dispenser.notes_pending()
            retracted = dispenser.retract() if pending else 0
        except DeviceError as exc:
            # Cannot tell what the customer got: reverse nothing blindly; a person must count.
            log.critical(
                "recovery: dispenser cannot be asked (%s); session %s needs balancing", exc, session
            )
            raise
        if pending:
            return owe(0, "notes were still in the dispenser: retracted", retracted)
        if "stacked" in events:
            stacked = int(events["stacked"].data.get("amount", 0))
            if stacked < approved:
                return owe(stacked, f"customer took {stacked} of {approved} (after a crash)")
            return _done(journal, Recovery(session, "complete", "notes gone: customer took them"))
        return owe(0, "crashed before any note moved")
    return owe(0, "approved or unanswered, nothing dispensed")


def _done(journal: Journal, result: Recovery) -> Recovery:
    journal.record(
        "recovered",
        result.session,
        durable=True,
        action=result.action,
        detail=result.detail,
        retracted=result.retracted,
    )
    journal.record(
        "session_end",
        result.session,
        durable=True,
        outcome=f"recovered:{result.action}",
        dispensed=0,
    )
    log.warning("recovered session %s: %s (%s)", result.session, result.action, result.detail)
    return result
