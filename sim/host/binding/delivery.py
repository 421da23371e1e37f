"""The outbox's peer for binding messages: the payment server (signed requests).

``session``: ask for a binding address (or a pushed message). Sent only while the bank's
session is still open (:meth:`BindingDesk.sendable`); the answer's address is recorded
on the session. The payment server is idempotent by session id, so a request whose
answer was lost is simply sent again. A refusal (4xx) fails the session cleanly (nothing
to bind); a server that is down, slow or 5xx is retried with the outbox's backoff until
the session expires, after which the request is dropped as pointless.

``revoke``: the customer revoked at the bank; retried until the payment server has it.
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.parse

from atm_common.clock import Clock
from sim.host.binding.desk import BindingDesk
from sim.host.outbox import Payload, RetryableDeliveryError
from sim.host.outbox.alarm_delivery import _error_text, _SignedClient

log = logging.getLogger(__name__)


class PayappLink(_SignedClient):
    """Delivers the ``binding`` outbox kind to the payment server at ``base_url``."""

    option = "--payapp"

    def __init__(
        self,
        base_url: str,
        key: bytes,
        desk: BindingDesk,
        *,
        tls: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(base_url, key, tls=tls, clock=clock)
        self.desk = desk

    async def __call__(self, payload: Payload) -> None:
        kind = payload.get("type")
        if kind == "session":
            await self._session(payload)
        elif kind == "revoke":
            binding = urllib.parse.quote(str(payload["binding_id"]))
            url = f"{self.base_url}/bank/bindings/{binding}/revocation"
            status, _answer = await self._request(url, b"{}")
            if not (200 <= status < 300 or status == 404):  # 404: never bound there
                raise RetryableDeliveryError(f"payment server answered {status}")
        else:
            log.error("binding outbox entry of unknown type %r dropped", kind)

    async def _session(self, payload: Payload) -> None:
        session_id = str(payload["session_id"])
        if not self.desk.sendable(session_id):
            log.info("binding session closed before its request went out: not sent")
            return
        body = json.dumps({k: v for k, v in payload.items() if k != "type"}).encode()
        status, answer = await self._request(f"{self.base_url}/bank/sessions", body)
        if 200 <= status < 300:
            try:
                address = str(json.loads(answer)["address"])
            except (ValueError, KeyError, TypeError):
                raise RetryableDeliveryError("payment server sent no address") from None
            self.desk.addressed(session_id, address)
            return
        text = f"payment server answered {status}: {_error_text(answer)}"
        if status in (400, 404, 409, 410, 422):
            log.warning("binding session refused: %s", text)
            self.desk.refused(session_id, _error_text(answer))
            return
        raise RetryableDeliveryError(text)
