"""Count the commits an SQLite database made, from its write-ahead log: the proof for the
tests that say how many durable commits a session costs.

In WAL mode every transaction appends its pages to ``<db>-wal`` as frames; the last frame
of a transaction (its commit record) carries the database size after the commit in its
header, every other frame zero (https://www.sqlite.org/fileformat.html#the_write_ahead_log).
Frames whose salt differs from the header's are left over from before the log was last
restarted and do not count. A checkpoint restarts the log, so the tests take their counts
while it holds far fewer than the 1000 pages that trigger one, and check it did not shrink.
"""

from __future__ import annotations

from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24


def wal_commits(db: Path) -> int:
    """Commit records in ``db``'s write-ahead log (0 if it has none)."""
    wal = db.with_name(db.name + "-wal")
    data = wal.read_bytes() if wal.exists() else b""
    if len(data) < WAL_HEADER:
        return 0
    page_size = int.from_bytes(data[8:12], "big")
    salt = data[16:24]
    commits, offset = 0, WAL_HEADER
    while offset + FRAME_HEADER + page_size <= len(data):
        header = data[offset : offset + FRAME_HEADER]
        if header[8:16] != salt:
            break
        if int.from_bytes(header[4:8], "big"):
            commits += 1
        offset += FRAME_HEADER + page_size
    return commits


class CommitCount:
    """Commits made by a set of databases between :meth:`start` and :meth:`stop`."""

    def __init__(self, *databases: Path) -> None:
        self.databases = databases
        self._before: dict[Path, int] = {}
        self.counts: dict[str, int] = {}

    def start(self) -> None:
        self._before = {db: wal_commits(db) for db in self.databases}

    def stop(self) -> dict[str, int]:
        for db in self.databases:
            now = wal_commits(db)
            assert now >= self._before[db], f"{db.name}: the log was checkpointed meanwhile"
            self.counts[db.name] = now - self._before[db]
        return self.counts

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def terminal_commits(journal: Path) -> CommitCount:
    """A count over the terminal's three databases: journal, SAF queue, STAN counter (named
    beside the journal as :class:`terminal.app.Terminal` names them)."""
    return CommitCount(
        journal,
        journal.with_name(journal.stem + "-saf.db"),
        journal.with_name(journal.stem + "-counters.db"),
    )
