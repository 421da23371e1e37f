"""Several host processes serving one port and one ledger (``atm host --workers N``).

One Python process uses one core; the host's request path is CPU-bound (codec, MACs,
PIN blocks, SQL). So ``--workers N`` starts N ordinary ``atm host`` processes that all
listen on the same port with SO_REUSEPORT (the kernel spreads new connections over them)
and open the same database: an SQLite file (WAL; writers take turns through
``BEGIN IMMEDIATE`` and the busy timeout) or a PostgreSQL database (writers take turns
through the host's advisory lock, :mod:`sim.host.storage.pg`). Money stays exact because
every authorisation still reads, decides and writes inside one serialised transaction;
what runs in parallel is everything around it (TLS, framing, MAC checks, encoding).

This parent process creates and seeds the database once, before any worker starts (so
none of them races another to create a table), prints ``listening on HOST:PORT`` once all
of them listen, passes SIGTERM/SIGINT on, and ends when they do. If one worker dies the
others are stopped too and the exit status says so: a supervisor restarts the set.
Only worker 0 runs the outbox delivery, the reservation sweep and the phone API.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from sim.services import read_listening, service_argv

_OWN = ("--workers", "--port", "--worker")


def child_argv(argv: Sequence[str], port: int, index: int, count: int) -> list[str]:
    """``argv`` (``host ...``, as given to this process) for worker ``index``: the same
    options, the port all of them share, and which of ``count`` it is."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _OWN:
            skip = True
            continue
        if arg.startswith(tuple(f"{own}=" for own in _OWN)):
            continue
        args.append(arg)
    return service_argv(*args, "--port", str(port), "--worker", f"{index}/{count}")


def _reserve(host: str, port: int) -> tuple[socket.socket | None, int]:
    """For port 0: a port bound (not listening) with SO_REUSEPORT until the workers listen."""
    if port != 0:
        return None, port
    family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock, int(sock.getsockname()[1])


def _forward(stream: object, echo: Callable[[str], None]) -> None:
    """Hand a worker's later stdout lines (``api on ...``) to ``echo``."""
    for line in stream:  # type: ignore[attr-defined]
        echo(line)


def run_workers(
    argv: Sequence[str],
    count: int,
    host: str,
    port: int,
    on_ready: Callable[[str, int], None],
    echo: Callable[[str], None],
) -> int:
    """Start ``count`` workers of ``atm host`` (``argv``); returns when they have ended.

    ``on_ready(host, port)`` once every worker listens; ``echo`` gets the workers' later
    output lines. The CLI prints both: this module only runs processes."""
    reserved, port = _reserve(host, port)
    processes: list[subprocess.Popen[str]] = []
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(count):
            cmd = child_argv(argv, port, index, count)
            processes.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        for index, process in enumerate(processes):
            read_listening(process, f"host worker {index}")
        if reserved is not None:
            reserved.close()
        on_ready(host, port)
        for process in processes:
            threading.Thread(target=_forward, args=(process.stdout, echo), daemon=True).start()
        # wakes at once on SIGTERM/SIGINT; otherwise looks at the workers 5 times a second
        while not stopping.wait(0.2) and all(p.poll() is None for p in processes):
            pass
        failed = [p.returncode for p in processes if p.poll() is not None and p.returncode]
        return 1 if failed and not stopping.is_set() else 0
    finally:  # a worker that did not start raises: the CLI prints it as one line
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if reserved is not None:
            reserved.close()
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
