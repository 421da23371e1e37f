"""Files and directories private to their owner: 0600 and 0700, whoever creates them.

Everything this project writes holds something an outsider must not read: the host's
database (keyed PAN references, PIN offsets, working keys under the LMK), the terminal's
journal and store-and-forward queue, logs, generated seeds and configurations (keys),
camera snapshots. The ``atm`` command sets ``umask 077`` for all of them
(:func:`atm_common.cli.run`), but a library user - a test, a benchmark, another program
embedding the host or the terminal - keeps its own umask, so the functions that create
such files call these helpers too: privacy does not depend on who started the process.

Existing directories are left as they are (``--db host.db`` must not lock down the
caller's working directory); an existing regular file that is readable by others is
tightened to 0600, so a database made by an older version stops being world-readable the
next time it is opened.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "PRIVATE_UMASK",
    "private_database",
    "private_dir",
    "private_file",
    "write_private",
]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
PRIVATE_UMASK = 0o077  # what the entry points set: group and others get nothing

# SQLite's companions of a database file; it creates them with the database's own mode,
# so a private database file is enough for new ones, but older ones are tightened too.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p path`` where every directory it creates is 0700; returns ``path``."""
    target = Path(path)
    missing: list[Path] = []
    for candidate in (target, *target.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process was quicker
            directory.mkdir(mode=PRIVATE_DIR)
        _tighten(directory, PRIVATE_DIR, stat.S_ISDIR)
    return target


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make sure ``path`` exists as a file only its owner can read (0600), its directory
    created private if missing; content is left untouched. Returns ``path``."""
    target = Path(path)
    private_dir(target.parent)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    except IsADirectoryError:
        return target  # the caller's open() will report it
    os.close(fd)
    _tighten(target, PRIVATE_FILE, stat.S_ISREG)
    return target


def private_database(path: str | os.PathLike[str]) -> Path:
    """Prepare an SQLite database file (and its -wal/-shm/-journal) to be private before
    ``sqlite3.connect`` opens it. In-memory and URI names are left alone."""
    text = os.fspath(path)
    if text in ("", ":memory:") or text.startswith("file:"):
        return Path(text)
    target = private_file(text)
    for suffix in SQLITE_COMPANIONS:
        companion = target.with_name(target.name + suffix)
        if companion.exists():
            _tighten(companion, PRIVATE_FILE, stat.S_ISREG)
    return target


def write_private(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path``, replacing its content, as a 0600 file."""
    target = private_file(path)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(target, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    return target


def _tighten(path: Path, mode: int, kind: Callable[[int], bool]) -> None:
    """Clear group/other bits of ``path`` if it is ours and of the expected kind (never a
    device such as /dev/null, never someone else's file)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not kind(st.st_mode) or st.st_uid != os.geteuid():
        return
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
