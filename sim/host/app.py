"""Assemble and run the bank host simulator: database + seed + rules + TCP server, and
optionally the phone API (cardless withdrawal, ATM routing) in the same event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import ssl
from collections.abc import Callable
from pathlib import Path

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError, ConfigError
from atm_common.tls import client_context, server_context
from sim.asgi_service import QuietServer, listen, server_config
from sim.host import db, storage
from sim.host.api import create_app
from sim.host.authoriser import DEFAULT_CLOCK_SKEW, Authoriser
from sim.host.binding.api import install as install_binding
from sim.host.binding.delivery import PayappLink
from sim.host.cardless.iso import CardlessDesk
from sim.host.cardless.phone import PhoneBank
from sim.host.cardless.sms import SimulatedSmsGateway
from sim.host.enterprise.api import EnterpriseApi
from sim.host.group_commit import MAX_BATCH
from sim.host.joint.api import add_joint_cardless_routes, add_joint_routes
from sim.host.joint.cardless import JointCardless
from sim.host.joint.core import SimulatedBillDelivery
from sim.host.joint.phone import JointPhone
from sim.host.ledger import Ledger
from sim.host.outbox import AlarmDeliverer, CarrierLocator, Deliverer, OutboxWorker
from sim.host.public_keys import refuse_public_keys
from sim.host.seed import load_seed, read_keys
from sim.host.server import MAX_CONNECTIONS, HostServer
from sim.host.supervision.api import install_fleet
from sim.pki import Pki
from sim.service_auth import load_host_key

log = logging.getLogger(__name__)


def build_host(
    db_path: Path | str,
    seed: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8583,
    clock: Clock | None = None,
    demo: bool = False,
    max_clock_skew: float = DEFAULT_CLOCK_SKEW,
    pki: Pki | None,
    worker: tuple[int, int] | None = None,
    max_batch: int = MAX_BATCH,
    max_connections: int = MAX_CONNECTIONS,
) -> HostServer:
    """Open (or create and seed) the database and build the server, not yet listening.

    A seed holding the published demo keys is refused (:class:`ConfigError`) unless
    ``demo`` is true, before the database file is created: a bank on public keys protects
    nothing, and it must not start by accident (``atm host`` without ``--seed``).
    ``max_clock_skew`` is the freshness window of network messages (see
    :class:`~sim.host.authoriser.Authoriser`).

    ``pki`` (a directory made by ``atm pki init``) puts the ISO port behind mutual TLS:
    the host's certificate, and a client certificate from that CA required, whose
    common name must be the terminal id of every message (:class:`HostServer`). None
    is plain TCP, and must be asked for (``atm host --plain``): there is no default.

    ``db_path`` is an SQLite file or a ``postgresql://`` URL (:mod:`sim.host.storage`).
    ``worker`` = (index, count): this is one of ``count`` processes serving the same port
    (SO_REUSEPORT) and database (:mod:`sim.host.workers`). ``max_batch``: the most
    requests one group commit holds (:mod:`sim.host.group_commit`; 1 turns it off).
    """
    clock = clock or SystemClock()
    refuse_public_keys(str(seed), *read_keys(seed), demo=demo)
    context = iso_tls_context(pki) if pki is not None else None
    conn = db.connect(db_path)
    log.info("ledger: %s", storage.redact(db_path))  # never a password
    keys, settings = load_seed(conn, seed, Ledger(conn, clock))
    authoriser = Authoriser(conn, keys, settings, clock, max_clock_skew=max_clock_skew)
    if worker is not None:
        authoriser.share(*worker)
    return HostServer(
        authoriser,
        host,
        port,
        ssl=context,
        reuse_port=worker is not None,
        max_batch=max_batch,
        max_connections=max_connections,
    )


def iso_tls_context(pki: Pki) -> ssl.SSLContext:
    """The ISO port's server context: the host's certificate, client certificates required."""
    if not pki.ca.is_file():
        raise ConfigError(
            "--tls-dir", "", f"{pki.directory} holds no ca.pem (make one: atm pki init DIR)"
        )
    return server_context(
        pki.service("host"), require_client_cert=True, source=str(pki.directory), key="host"
    )


async def serve(
    server: HostServer,
    on_ready: Callable[[str, int], None] | None = None,
    *,
    alarm_center: str | None = None,
    carrier: str | None = None,
    host_key_file: Path | None = None,
    db_path: Path | str | None = None,
    api_port: int | None = None,
    api_host: str = "127.0.0.1",
    sms_inbox: bool = False,
    on_api_ready: Callable[[str, int], None] | None = None,
    sweep_interval: float = 30.0,
    stop: asyncio.Event | None = None,
    outbox_max_delay: float = 30.0,
    pki: Pki | None = None,
    payapp: str | None = None,
    payapp_key_file: Path | None = None,
    binding_seconds: float | None = None,
    background: bool = True,
    operator_token: str | None = None,
) -> None:
    """Listen until SIGINT/SIGTERM (or ``stop`` is set), then close cleanly.

    With ``alarm_center`` (a URL) an outbox worker delivers silent alarms, asking the
    ``carrier`` service where a terminal without GPS or site location is; both requests
    are signed with the key in ``host_key_file`` (required with either). Without an alarm
    center the alarms wait in the durable outbox. SMS (cardless codes) are always delivered, to the
    simulated network the phone reads through the API.

    With ``api_port`` (0 picks a free one) the phone API listens on ``api_host`` (default
    loopback, never just wherever the ISO port listens: terminals and phones are not the
    same audience); ``sms_inbox`` adds the simulated SMS inbox (demo only: it shows every
    code); ``on_api_ready(host, port)`` is called once it accepts connections. Expired
    cardless reservations are swept every ``sweep_interval`` s.

    ``pki``: the CA directory the ISO port's TLS came from (``build_host``), for the
    other links of the host; None where they are plain. With it the phone API serves
    HTTPS (its ``phone-api`` certificate, no client certificate asked), and https URLs of
    the alarm center and the carrier are reached with the host's certificate, theirs
    verified against the CA; an http URL stays plain (a ``--plain`` peer).

    ``payapp`` (a URL) with ``payapp_key_file``: binding accounts to that payment app
    (:mod:`sim.host.binding`); its callbacks come to the phone API (``api_port``).
    ``operator_token``: the bank operator's bearer token for ``GET /terminals`` on the
    phone API (:mod:`sim.host.supervision.api`); without it that route answers 403.
    ``background`` False (the second and later processes of ``--workers``): no outbox
    delivery and no reservation sweep here; the first process does them for all, so an
    SMS is never sent twice. What this one queues is delivered at that one's next poll.
    """
    deliverers: dict[str, Deliverer] = {
        "sms": SimulatedSmsGateway(),
        "bill": SimulatedBillDelivery(),  # joint-account bills (sim/host/joint)
    }
    kinds: tuple[str, ...] | None = None
    preparers = None
    if (alarm_center or carrier) and host_key_file is None:
        raise ConfigError("--host-key-file", "", "needed to sign requests to the alarm center")
    # the host's client certificate towards the alarm center and the carrier (mutual TLS)
    peer_tls = (
        client_context(pki.service("host"), source=str(pki.directory), key="host")
        if pki is not None
        else None
    )
    if alarm_center:
        assert host_key_file is not None
        key = load_host_key(host_key_file)
        deliverers["alarm"] = AlarmDeliverer(alarm_center, key, tls=peer_tls)
        preparers = (
            {"alarm": CarrierLocator(carrier, key, tls=peer_tls).fill_location} if carrier else None
        )
        for url in (alarm_center, carrier):
            if url and url.startswith("http:") and pki is not None:
                log.warning("%s is plain http: alarms and locations cross it in clear", url)
    else:
        kinds = ("sms", "bill")  # alarms wait, untouched, for a host started with an alarm center
        log.warning("no alarm center configured: silent alarms wait in the host's outbox")
    worker = OutboxWorker(
        db_path or server.authoriser.conn,
        server.authoriser.clock,
        deliverers,
        preparers=preparers,
        base_delay=0.5,
        max_delay=outbox_max_delay,
        poll_interval=0.5,
        kinds=kinds,
    )
    server.on_alarm = worker.wake
    binding_key = _payapp(server, worker, payapp, payapp_key_file, peer_tls)
    if binding_seconds is not None:
        server.authoriser.binding.address_seconds = binding_seconds
    if binding_key is not None and worker.kinds is not None:
        worker.kinds = (*worker.kinds, "binding")
    stop = stop or asyncio.Event()
    tasks = (
        [
            asyncio.create_task(worker.run(stop)),
            asyncio.create_task(_sweep(server.authoriser.cardless, stop, sweep_interval)),
        ]
        if background
        else []
    )
    api: QuietServer | None = None
    try:
        if api_port is not None:
            bank = PhoneBank(server.authoriser.cardless, on_sms=worker.wake)
            sock = listen(api_host, api_port)
            api_address = sock.getsockname()
            # HTTPS with the phone-api certificate; no client certificate: phones are people
            api_tls = (
                server_context(
                    pki.service("phone-api"),
                    require_client_cert=False,
                    source=str(pki.directory),
                    key="phone-api",
                )
                if pki is not None
                else None
            )
            enterprise = EnterpriseApi(
                server.authoriser.conn,
                server.authoriser.clock,
                server.authoriser.ledger,
                server.authoriser.settings.currency,
            )
            app = create_app(bank, sms_inbox=sms_inbox, enterprise=enterprise)
            authoriser = server.authoriser
            joint_phone = JointPhone(
                authoriser.conn, authoriser.joint.keys, authoriser.settings, authoriser.clock
            )
            add_joint_routes(app, joint_phone)  # the co-owners' bank app (sim/host/joint/api.py)
            add_joint_cardless_routes(app, JointCardless(bank, joint_phone))
            install_binding(app, server.authoriser.binding, binding_key)
            install_fleet(app, server.authoriser.conn, operator_token)
            scheme = "https" if api_tls is not None else "http"
            server.authoriser.binding.callback_url = (
                f"{scheme}://{api_address[0]}:{api_address[1]}/payapp/callbacks"
                if binding_key is not None
                else ""
            )
            config = server_config(app, api_tls)
            config.proxy_headers = False  # the peer is the client: no X-Forwarded-For
            api = QuietServer(config)
            tasks.append(asyncio.create_task(api.serve(sockets=[sock])))
            while not api.started and not tasks[-1].done():
                await asyncio.sleep(0.01)  # startup takes a few loop turns
            if tasks[-1].done():
                raise AtmError(f"the phone API did not start: {tasks[-1].exception()}")
        port = await server.start()
        if on_ready is not None:
            on_ready(server.host, port)
        if api is not None and on_api_ready is not None:
            on_api_ready(api_address[0], api_address[1])
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("host stopping")
    finally:
        stop.set()
        if api is not None:
            api.should_exit = True
        await server.stop()
        worker.wake()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("host task ended with %r", result)
        worker.close()
        server.authoriser.conn.close()


def _payapp(
    server: HostServer,
    worker: OutboxWorker,
    url: str | None,
    key_file: Path | None,
    tls: ssl.SSLContext | None,
) -> bytes | None:
    """The payment server's outbox peer, or None without one (binding is then refused)."""
    desk = server.authoriser.binding
    desk.on_queued = worker.wake
    if url is None:
        return None
    if key_file is None:
        raise ConfigError("--payapp-key-file", "", "needed to sign requests to the payment app")
    key = load_host_key(key_file)
    worker.deliverers["binding"] = PayappLink(url, key, desk, tls=tls)
    return key


async def _sweep(desk: CardlessDesk, stop: asyncio.Event, interval: float) -> None:
    """Release the holds of expired cardless reservations every ``interval`` seconds."""
    while not stop.is_set():
        try:
            desk.sweep()
        except (sqlite3.Error, AtmError) as exc:
            log.error("cardless sweep failed, trying again later: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
