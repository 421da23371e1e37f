"""One writer per file: an advisory ``flock`` on ``<file>.lock`` next to it.

Two ``atm host`` commands on one SQLite ledger, or two terminals on one journal, would
each believe it is alone: SQLite serialises their writes but not their meaning (two
STAN counters, two outbox workers, two settlement runs). The process that owns a file
takes its lock for as long as it runs and anyone else is told who holds it. The kernel
drops a ``flock`` when its holder dies, even by ``kill -9``, so a stale lock file never
blocks a restart. A host's own worker processes share the parent's ledger on purpose:
the lock is the parent's, held while the workers run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from atm_common.errors import ServiceUnavailable
from atm_common.files import private_file


class InUse(ServiceUnavailable):
    """Another process holds the lock; ``holder`` is its pid when it wrote one."""

    def __init__(self, message: str, holder: int | None) -> None:
        self.holder = holder
        super().__init__(message)


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _holder(lock: Path) -> int | None:
    try:
        text = lock.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def exclusive(path: Path, message: str) -> Iterator[None]:
    """Hold the lock of ``path`` (``<path>.lock``, 0600) until the block ends.

    ``message`` says what is taken (``another host is already serving var/host.db``);
    the holder's pid is added to it. Raises :class:`InUse` at once, never waits.
    """
    lock = lock_path(path)
    fd = os.open(private_file(lock), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(lock)
            raise InUse(f"{message}{f' (pid {holder})' if holder else ''}", holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing drops the flock


def holder(path: Path) -> int | None:
    """The pid holding ``path``'s lock, 0 when held by an unknown pid, None when free."""
    lock = lock_path(path)
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(lock) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
