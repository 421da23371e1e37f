"""The console of ``atm run --sim``: lines typed at a prompt, without blocking the loop.

Why not ``input()`` in an executor: a thread blocked in ``input()`` holds up the interpreter's
exit, so Ctrl-C did nothing until Enter, and end of input surfaced as an ``EOFError``
traceback. Here a daemon thread reads the raw file descriptor (``os.read``: no buffered
``sys.stdin`` lock for shutdown to trip over) and hands whole lines to the event loop;
:meth:`Console.ask` returns a line, None at end of input (Ctrl-D, the end of a pipe), and
raises :class:`Interrupted` as soon as Ctrl-C (SIGINT) or SIGTERM arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) at the console: stop now. Control flow, not an error."""


class Console:
    """Prompted lines from ``fd`` (default stdin) for a coroutine; see the module doc."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.interrupted = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._thread = threading.Thread(target=self._read, name="console", daemon=True)
        self._thread.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self.interrupted.set)

    def close(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_signal_handler(sig)

    def _read(self) -> None:
        """The reader thread: whole lines (without the newline) to the queue, then None."""
        pending = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                if pending:
                    self._put(pending.decode(errors="replace"))
                self._put(None)
                return
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                self._put(line.decode(errors="replace").rstrip("\r"))

    def _put(self, line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is asking
            self._loop.call_soon_threadsafe(self._lines.put_nowait, line)

    def say(self, text: str) -> None:
        print(text, flush=True)

    async def ask(self, prompt: str) -> str | None:
        """Show ``prompt``; the line typed (stripped), or None at end of input."""
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = await self.wait_for(self._lines.get())
        if line is None:
            self._lines.put_nowait(None)  # end of input stays the end for any later ask
        return None if line is None else line.strip()

    async def wait_for(self, aw: Awaitable[T]) -> T:
        """``aw``'s result; :class:`Interrupted` (``aw`` cancelled) once a signal arrives."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.interrupted.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise Interrupted
        return task.result()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; :class:`Interrupted` at once on Ctrl-C."""
        await self.wait_for(asyncio.sleep(seconds))
