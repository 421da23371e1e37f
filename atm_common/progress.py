"""Progress of long work (the soak, the demo, the benchmarks) on a person's terminal.

Drawn by ``rich`` on stderr while both stdout and stderr are terminals and no ``--json``
was asked for; otherwise nothing is drawn and nothing of rich is imported, so a pipe, a
log file, CI and a ``--json`` reader see exactly the output they saw before. The work
reports through two calls, :meth:`Progress.advance` and :meth:`Progress.step`, which
cost nothing when progress is off.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Self


def wanted(*, json: bool = False) -> bool:
    """Whether to draw: a person is watching (both streams are terminals), no --json."""
    return not json and sys.stdout.isatty() and sys.stderr.isatty()


class Progress:
    """A bar (``total`` known) or a spinner (``total`` None) with a description."""

    def __init__(self, description: str, total: int | None = None, *, enabled: bool) -> None:
        self.description, self.total, self.enabled = description, total, enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
            if self.total is not None:
                columns += [BarColumn(), MofNCompleteColumn()]
            columns.append(TimeElapsedColumn())
            self._bar = RichProgress(*columns, console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, count: int = 1) -> None:
        """``count`` more units of the total are done."""
        if self._bar is not None:
            self._bar.advance(self._task, count)

    def step(self, text: str) -> None:
        """What is being done now (``session 3 of 12: duress``)."""
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self.description}: {text}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
