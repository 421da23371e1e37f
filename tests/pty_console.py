"""A real process on a real pseudo-terminal, for tests that type at a prompt and read the
screen (what ``pexpect`` does, in a few lines): the child is a session leader whose
controlling terminal is the pty, so Ctrl-C typed there is a SIGINT, Ctrl-D an end of file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import signal
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

CTRL_C, CTRL_D = "\x03", "\x04"


def _controlling_tty() -> None:  # in the child, between fork and exec
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyProcess:
    """``argv`` on a new pty; :meth:`send` types, :meth:`expect` reads the screen."""

    def __init__(
        self, argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        master, slave = os.openpty()
        self.master = master
        self.proc = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
            preexec_fn=_controlling_tty,
        )
        os.close(slave)
        self.screen = ""  # everything the process wrote so far
        self._seen = 0  # where the next expect starts looking

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def line(self, text: str) -> None:
        self.send(text + "\n")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its end
            chunk = b""
        if not chunk:
            return False
        self.screen += chunk.decode(errors="replace").replace("\r\n", "\n")
        return True

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears after the last match; the match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.screen, self._seen)
            if found:
                self._seen = found.end()
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                shown = self.screen
                raise AssertionError(f"{pattern!r} not on the screen in {timeout} s:\n{shown}")
            if not self._read(min(remaining, 0.2)) and self.proc.poll() is not None:
                while self._read(0.05):
                    pass
                if not regex.search(self.screen, self._seen):
                    raise AssertionError(
                        f"process exited ({self.proc.returncode}) before {pattern!r}:\n"
                        f"{self.screen}"
                    )

    def drain(self, seconds: float) -> str:
        """Read for ``seconds``; what appeared meanwhile."""
        start = len(self.screen)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._read(min(remaining, 0.2))
        return self.screen[start:]

    def wait(self, timeout: float = 10.0) -> int:
        """The exit code (reading the screen meanwhile, so the child never blocks on it)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s:\n{self.screen}")
            self._read(0.1)
        while self._read(0.05):
            pass
        return self.proc.returncode

    def close(self) -> None:
        """Stop the child by its PID (SIGTERM, then SIGKILL) and release the pty."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.master)
