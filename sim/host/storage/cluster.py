"""A private PostgreSQL cluster for tests and benchmarks: initdb in a temporary
directory, a Unix socket only (no TCP port, no system service), stopped by its own
``pg_ctl`` at teardown. Needs the server binaries (Debian ``postgresql``, version 15).

Each test (or module) gets a fresh database from :meth:`PgCluster.create_database`, so
tests stay independent while the cluster starts once per session. Run as root (the
kiosk image, CI) the server runs as the ``postgres`` user, which PostgreSQL requires.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PORT = 5432  # names the socket file only: the socket directory is private to the cluster


class PgCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="atm-pg-"))
        self.data = self.dir / "data"
        self._names = itertools.count(1)
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
            if not os.stat("/dev/null").st_mode & stat.S_IWOTH:
                # a machine whose /dev/null lost its 0666 (seen on shared CI boxes): the
                # cluster gets a good one in a private mount namespace, nothing else does
                null = self.dir / "null"
                os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
                os.chmod(null, 0o666)
                bind = f'mount --bind {null} /dev/null && exec "$@"'
                self._as = ["unshare", "-m", "sh", "-c", bind, "sh", *self._as]
        self.running = False

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout[-500:]} {done.stderr[-500:]}")

    def start(self) -> PgCluster:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "atm")
        options = f"-k {self.dir} -p {PORT} -c listen_addresses='' -c max_connections=400"
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "log"), "-w", "start",
        )  # fmt: skip
        self.running = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://atm@/{database}?host={self.dir}&port={PORT}"

    def create_database(self, prefix: str = "host") -> str:
        """A new, empty database; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`, closing whatever connections
        to it are still open (a test's leftovers must not exhaust the server's slots)."""
        name = url.split("?")[0].rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.running:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
