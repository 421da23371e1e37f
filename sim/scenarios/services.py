"""Run the project's own services (``atm host``, ``atm alarm-center``, ``atm carrier``) as
separate processes on free loopback ports, the way a bank-side tester would."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from terminal.errors import TerminalError


@dataclasses.dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[str]
    address: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def service_process(name: str, args: list[str]) -> Iterator[ServiceProcess]:
    """``atm NAME ARGS --port 0``; waits for its "listening on HOST:PORT" line."""
    cmd = [sys.executable, "-m", "terminal.cli", name, *args, "--port", "0"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # stderr to a file, never an unread pipe: a chatty service would block once it filled
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        handle: ServiceProcess | None = None
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("listening on "):
                proc.wait(timeout=10)
                errors.seek(0)
                raise TerminalError(f"{name} did not start: {line.strip()} {errors.read().strip()}")
            address, _, port = line.split()[-1].rpartition(":")
            handle = ServiceProcess(name, proc, address, int(port))
            yield handle
        finally:
            if handle is not None:
                handle.stop()
            elif proc.poll() is None:
                proc.kill()
                proc.wait()


def log_args(path: Path | None) -> list[str]:
    return ["--log", str(path)] if path is not None else []
