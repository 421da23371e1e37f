"""What a soak run tells its caller: ``atm soak`` prints it, CI and the benchmark read it.

A separate module because it is the soak's public answer, read by :mod:`sim.cli` and
``bench/bench_soak.py`` (through ``--json``), while the harness and its checks are free to
change. :meth:`SoakReport.summary` is the deterministic part: the same seed must give the
same summary, which is how a replay is told apart from a new run.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class SoakReport:
    transactions: int
    faults: dict[str, int]
    discrepancies: int
    duplicate_postings: int
    saf_pending: int
    exception_queue: int
    seed: int
    outcomes: dict[str, int]
    cash_handed_out: int
    terminal_restarts: int
    host_restarts: int
    elapsed_s: float
    problems: list[str]
    duress_sessions: int = 0
    alarm_entries: dict[str, int] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        keys = (
            "transactions",
            "faults",
            "discrepancies",
            "duplicate_postings",
            "saf_pending",
            "exception_queue",
            "seed",
        )
        return {k: getattr(self, k) for k in keys}


def count_problems(problems: list[str]) -> tuple[int, int]:
    """(discrepancies, duplicate postings) among the checks' problems."""
    duplicates = sum(1 for p in problems if p.startswith("duplicate"))
    return len(problems) - duplicates, duplicates
