"""The one launcher of service processes: ``atm host``, ``atm alarm-center``, ``atm carrier``,
``atm payapp-server``.

Each runs as a separate process (``python -m sim NAME ...``) on a free loopback port, the
way a bank-side tester runs them; the demo, the soak and the tests all start them here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from atm_common.errors import AtmError


@dataclasses.dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[str]
    address: str
    port: int
    tls: bool = dataclasses.field(default=False, kw_only=True)  # started with --tls-dir

    @property
    def url(self) -> str:
        """Where an HTTP service answers: https when it serves TLS (``--tls-dir``)."""
        return f"{'https' if self.tls else 'http'}://{self.address}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def service_argv(name: str, *args: str) -> list[str]:
    """The command line of ``atm NAME ARGS`` as a service process of its own."""
    return [sys.executable, "-m", "sim", name, *args]


def read_listening(proc: subprocess.Popen[str], name: str) -> tuple[str, int]:
    """Wait for a service's first line, ``listening on HOST:PORT``; its address and port."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        raise AtmError(f"{name} did not start: {line.strip()!r}")
    address, _, port = line.split()[-1].rpartition(":")
    return address, int(port)


@contextlib.contextmanager
def service_process(name: str, args: list[str], port: int = 0) -> Iterator[ServiceProcess]:
    """``atm NAME ARGS --port PORT`` (0: a free one); waits for "listening on HOST:PORT"."""
    cmd = service_argv(name, *args, "--port", str(port))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # stderr to a file, never an unread pipe: a chatty service would block once it filled
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        handle: ServiceProcess | None = None
        try:
            try:
                address, port = read_listening(proc, name)
            except AtmError as exc:
                proc.wait(timeout=10)
                errors.seek(0)
                raise AtmError(f"{exc} {errors.read().strip()}") from None
            handle = ServiceProcess(name, proc, address, port, tls="--tls-dir" in args)
            yield handle
        finally:
            if handle is not None:
                handle.stop()
            elif proc.poll() is None:
                proc.kill()
                proc.wait()


def log_args(path: Path | None) -> list[str]:
    return ["--log", str(path)] if path is not None else []
