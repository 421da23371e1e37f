"""Simulated terminal crashes (``kill -9``) at exact points of a session.

A crash is a :class:`SimulatedCrash`, a ``BaseException`` no handler in the terminal
catches, raised right after the journal has recorded a chosen event (committed, or still
waiting for the session's next commit: then it dies with the process, see
docs/durability.md). The harness then abandons the Terminal object without closing it
politely (its files stay exactly as a killed process leaves them), keeps the devices (the
hardware does not reboot with the software), and starts a new Terminal on the same files,
as a restarted process would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from terminal.app import Terminal
from terminal.journal import Journal


class SimulatedCrash(BaseException):
    """The process died here (deliberately not an Exception: nothing may catch it)."""


def crash_after(journal: Journal, event: str, count: int = 1) -> Callable[[], None]:
    """Make ``journal`` crash the process right after its ``count``-th ``event`` record.

    Returns a function that disarms the trap.
    """
    original = journal.record
    seen = {"n": 0}

    def record(name: str, session: str | None = None, *, durable: bool = False, **data: Any) -> int:
        seq = original(name, session, durable=durable, **data)
        if name == event:
            seen["n"] += 1
            if seen["n"] == count:
                journal.record = original  # type: ignore[method-assign]
                raise SimulatedCrash(f"killed after {event}")
        return seq

    journal.record = record  # type: ignore[method-assign,assignment]

    def disarm() -> None:
        journal.record = original  # type: ignore[method-assign]

    return disarm


async def kill(terminal: Terminal) -> None:
    """What the OS does to a killed process: sockets and files closed, nothing flushed
    beyond what was already committed, no goodbye to the host."""
    await terminal.host.close()
    terminal.saf.close()
    terminal.stan.close()
    terminal.journal.close(commit=False)  # the events buffered since the last commit are lost
