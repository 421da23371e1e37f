"""``python -m sim host --plain`` as a process of its own on a fixed port, so a test can
stop it and start it again on the same port (a host restart mid-run)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Host:
    """``python -m sim host --plain`` on a fixed port, so it can be restarted on it."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.proc: subprocess.Popen[str] | None = None
        self.log = workdir / "host.log"

    def start(self) -> None:
        argv = [sys.executable, "-m", "sim", "host", "--plain", "--demo"]
        argv += ["--db", str(self.workdir / "host.db"), "--port", str(self.port)]
        with self.log.open("a") as errors:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on"), self.log.read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def mac_failures(self) -> int:
        return self.log.read_text().count("MAC does not verify")
