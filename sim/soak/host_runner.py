"""The bank host of a soak run: a real ``atm host`` process the fault plan may kill.

It is a separate process, not an object in the harness's event loop, because the faults
it must survive are process deaths: ``kill -9`` mid-request, then a restart on the same
database file, exactly as an operator's supervisor would do it. It is launched through
:mod:`sim.services`, like every other service process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from atm_common.errors import AtmError
from sim.services import read_listening, service_argv


class HostRunner:
    """``atm host`` in its own process, killable with SIGKILL and restartable."""

    def __init__(
        self,
        db_path: Path | str,
        seed: Path,
        log_path: Path,
        alarm_center: str,
        host_key_file: Path,
        *,
        tls_dir: Path | None,
        api: bool = False,
        workers: int = 1,
    ) -> None:
        """``db_path``: an SQLite file or a PostgreSQL URL; ``workers``: host processes
        on the port (``atm host --workers``), killed together as a supervisor would."""
        self.workers = workers
        self.db_path, self.seed, self.log_path = db_path, seed, log_path
        self.tls_dir = tls_dir  # the ISO port over mutual TLS; None: plain TCP
        self.alarm_center, self.host_key_file = alarm_center, host_key_file
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.api = api  # the phone API too (joint-account approvals); its URL per start
        self.api_url = ""
        self.restarts = 0

    def start(self) -> int:
        cmd = service_argv("host", "--db", str(self.db_path), "--seed", str(self.seed))
        cmd += ["--port", "0", "--log", str(self.log_path)]
        # the generated seed carries the demo keys; the terminal lives on the soak's
        # simulated clock, far from the host's real one, so 0800s are not compared with it
        # (replayed ones are still refused)
        cmd += ["--demo", "--max-clock-skew", "0"]
        # alarms retried at most a second apart: an outage ends, delivery follows quickly
        cmd += ["--alarm-center", self.alarm_center, "--outbox-max-delay", "1"]
        cmd += ["--host-key-file", str(self.host_key_file)]  # alarms are signed
        cmd += ["--tls-dir", str(self.tls_dir)] if self.tls_dir is not None else ["--plain"]
        if self.api:
            cmd += ["--api-port", "0"]
        cmd += ["--workers", str(self.workers)]
        # a session of its own: kill -9 takes the workers with it (a supervisor's cgroup)
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        _, self.port = read_listening(self.process, "host")
        if self.api:
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if not line.startswith("api on "):
                raise AtmError(f"host API did not start: {line.strip()!r}")
            self.api_url = line.split()[-1]
        return self.port

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
