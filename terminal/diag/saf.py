"""``atm diag saf``: the store-and-forward queue and its exception queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atm_common.clock import SystemClock
from terminal.errors import JournalError
from terminal.saf import SafQueue


def saf_path(journal: Path) -> Path:
    """The SAF database beside a terminal's journal (as :class:`terminal.app.Terminal` puts it)."""
    return journal.with_name(journal.stem + "-saf.db")


def report(journal: Path, *, requeue: bool = False) -> dict[str, Any]:
    path = saf_path(journal)
    if not path.exists():
        raise JournalError(
            f"{path}: no store-and-forward queue here;"
            " has the terminal run with this config? (--config FILE)"
        )
    queue = SafQueue(path, SystemClock())
    try:
        requeued = queue.requeue_exceptions() if requeue else 0
        entries = queue.entries()
    finally:
        queue.close()

    def row(e: Any) -> dict[str, Any]:
        m = e.message
        return {
            "id": e.id,
            "created": e.created,
            "mti": m.get("t"),
            "stan": m.get("11"),
            "original": m.get("90", "")[:20],
            "attempts": e.attempts,
            "status": e.status,
            "response_code": e.response_code,
            "last_error": e.last_error,
        }

    return {
        "path": str(path),
        "pending": [row(e) for e in entries if e.status == "pending"],
        "exception_queue": [row(e) for e in entries if e.status == "exception"],
        "delivered": sum(1 for e in entries if e.status == "done"),
        "requeued": requeued,
    }
