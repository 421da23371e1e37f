"""``atm payapp-server``: the payment company's server as a process of its own.

Its own SQLite database (:mod:`sim.payapp.store`), its HTTP API (:mod:`sim.payapp.api`)
under uvicorn, and a durable outbox worker on a thread of its own that tells the bank
every result (bound, failed, revoked) at the ``callback_url`` the bank gave, signed with
the key the two share. A callback whose answer is lost is sent again: the bank's
endpoint is idempotent. Killed at any point, the server starts again from its file:
sessions go on where they were, and callbacks not yet acknowledged go out.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from atm_common.tls import TlsFiles, client_context, server_context
from sim.asgi_service import AsgiService, run_until_signalled
from sim.host.outbox import OutboxWorker, Payload, PermanentDeliveryError, RetryableDeliveryError
from sim.host.outbox.alarm_delivery import _error_text, _http, _opener
from sim.payapp.api import create_app
from sim.payapp.store import PayStore
from sim.pki import Pki
from sim.service_auth import RequestVerifier, load_host_key


class BankNotifier:
    """The outbox deliverer of callbacks to the bank (signed; https verified by the CA)."""

    def __init__(self, store: PayStore, key: bytes, tls: ssl.SSLContext | None) -> None:
        self.store, self._key, self._tls = store, key, tls

    async def __call__(self, payload: Payload) -> None:
        url = str(payload.get("callback_url", ""))
        body = {k: v for k, v in payload.items() if k != "callback_url"}
        opener = _opener(url, self._tls, "callback_url")
        data = json.dumps(body, sort_keys=True).encode()
        status, answer = await asyncio.to_thread(
            _http, opener, url, data, 5.0, self._key, self.store.clock
        )
        kind = body.get("type")
        if 200 <= status < 300:
            if kind == "bound":
                self.store.settle(str(body["binding_id"]), accepted=True)
            return
        if status == 409 and kind == "bound":  # the bank will not have it: never usable
            self.store.settle(str(body["binding_id"]), accepted=False)
            return
        if status == 404 and kind == "revoked":  # the bank never had it: nothing to end
            return
        text = f"bank answered {status}: {_error_text(answer)}"
        if status in (400, 422):
            raise PermanentDeliveryError(text)
        raise RetryableDeliveryError(text)


class PayappService(AsgiService):
    """The API on a uvicorn thread and the callback outbox on another."""

    name = "payapp"

    def __init__(
        self,
        db: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        key: bytes,
        tls: ssl.SSLContext | None = None,
        client_tls: ssl.SSLContext | None = None,
        sms_inbox: bool = False,
    ) -> None:
        super().__init__(host, port, tls=tls)
        self.db, self.key, self.client_tls, self.sms_inbox = db, key, client_tls, sms_inbox
        self.store: PayStore | None = None
        self._stop = threading.Event()
        self._outbox: threading.Thread | None = None

    def opened(self) -> None:
        self.store = PayStore(self.db)
        self._stop.clear()
        self._outbox = threading.Thread(target=self._deliver, name="payapp-outbox", daemon=True)

    def create_app(self) -> FastAPI:
        assert self.store is not None
        # addresses point at this server; the port is known once it listens (port 0)
        self.store.base_url = self.url
        assert self._outbox is not None
        self._outbox.start()
        return create_app(self.store, RequestVerifier(self.key), sms_inbox=self.sms_inbox)

    def _deliver(self) -> None:
        assert self.store is not None
        store = self.store

        async def main() -> None:
            stop = asyncio.Event()
            worker = OutboxWorker(
                store.path,
                store.clock,
                {"binding": BankNotifier(store, self.key, self.client_tls)},
                base_delay=0.3,
                max_delay=5.0,
                poll_interval=0.3,
            )

            async def watch() -> None:
                while not self._stop.is_set():
                    await asyncio.sleep(0.1)
                stop.set()

            try:
                await asyncio.gather(worker.run(stop), watch())
            finally:
                worker.close()

        asyncio.run(main())

    def closed(self) -> None:
        self._stop.set()
        if self._outbox is not None and self._outbox.is_alive():
            self._outbox.join(10)
        if self.store is not None:
            self.store.close()


def serve(
    db: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
    *,
    key_file: str | Path,
    pki: Pki | None = None,
    sms_inbox: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM. With ``pki``: HTTPS with its ``payapp`` certificate (no
    client certificate: apps are people; the bank proves itself by signing), and the
    bank's https callback URL verified against that CA."""
    key = load_host_key(key_file)
    tls = client_tls = None
    if pki is not None:
        tls = server_context(
            pki.service("payapp"),
            require_client_cert=False,
            source=str(pki.directory),
            key="payapp",
        )
        client_tls = client_context(TlsFiles(pki.ca), source=str(pki.directory), key="ca")
    service = PayappService(
        db, host, port, key=key, tls=tls, client_tls=client_tls, sms_inbox=sms_inbox
    )
    run_until_signalled(service, on_ready, stop)
