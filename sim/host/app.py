"""Assemble and run the bank host simulator: database + seed + rules + TCP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from sim.host import db
from sim.host.authoriser import Authoriser
from sim.host.ledger import Ledger
from sim.host.outbox import AlarmDeliverer, CarrierLocator, OutboxWorker
from sim.host.seed import load_seed
from sim.host.server import HostServer
from terminal.clock import Clock, SystemClock

log = logging.getLogger(__name__)


def build_host(
    db_path: Path,
    seed: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8583,
    clock: Clock | None = None,
) -> HostServer:
    """Open (or create and seed) the database and build the server, not yet listening."""
    clock = clock or SystemClock()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = db.connect(db_path)
    keys, settings = load_seed(conn, seed, Ledger(conn, clock))
    return HostServer(Authoriser(conn, keys, settings, clock), host, port)


async def serve(
    server: HostServer,
    on_ready: Callable[[str, int], None] | None = None,
    *,
    alarm_center: str | None = None,
    carrier: str | None = None,
    db_path: Path | None = None,
) -> None:
    """Listen until SIGINT/SIGTERM, then close cleanly.

    With ``alarm_center`` (a URL) an outbox worker delivers silent alarms, asking the
    ``carrier`` service where a terminal without GPS or site location is. Without it the
    alarms wait in the durable outbox.
    """
    worker: OutboxWorker | None = None
    worker_stop = asyncio.Event()
    worker_task: asyncio.Task[None] | None = None
    if alarm_center:
        preparers = {"alarm": CarrierLocator(carrier).fill_location} if carrier else None
        worker = OutboxWorker(
            db_path or server.authoriser.conn,
            server.authoriser.clock,
            {"alarm": AlarmDeliverer(alarm_center)},
            preparers=preparers,
            base_delay=0.5,
            max_delay=30.0,
            poll_interval=0.5,
        )
        server.on_alarm = worker.wake
        worker_task = asyncio.create_task(worker.run(worker_stop))
    else:
        log.warning("no alarm center configured: silent alarms wait in the host's outbox")
    port = await server.start()
    if on_ready is not None:
        on_ready(server.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("host stopping")
    await server.stop()
    if worker_task is not None and worker is not None:
        worker_stop.set()
        worker.wake()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        worker.close()
    server.authoriser.conn.close()
