"""The outbox's HTTP peers for a duress alarm: the alarm center and the carrier.

These are the only parts of the outbox that open sockets, so they are kept away from the
queue that authorisations write into (:mod:`sim.host.outbox.store`) and from the worker
that schedules attempts (:mod:`sim.host.outbox.worker`). Their one job is to turn an HTTP
answer into the worker's vocabulary: return for delivered, :class:`PermanentDeliveryError`
for a payload the peer will never take, :class:`RetryableDeliveryError` for everything
else. Requests use urllib in a worker thread so the host's event loop never blocks on a
socket, and never go through a proxy (these peers are on the bank's own network).

An ``https`` URL is reached with mutual TLS: the host's client certificate, and the
peer's verified against the bank's CA (and its name against the URL), never the system's
store; a handshake that fails is a retryable failure like a refused connection. A plain
``http`` URL (a ``--plain`` lab) is reached in clear, its requests still signed.

Every request is signed with the key the host shares with the peer
(:mod:`sim.service_auth`), freshly at each attempt (a new timestamp and nonce), so a retry
is never refused as a replay. The signing clock is the real one, not the host's injected
business clock: freshness is judged by the peer against the network's time. A 401 (the
keys differ, or the clocks) is retried, so alarms wait for the fix instead of being lost.
A 409 means the center holds *other* content under this alarm's id: that is not a
delivery, and retrying the same content cannot change it, so the entry fails for a
person to look at (:class:`AlarmConflictError`) and the alarms behind it go on.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError
from sim.host.outbox.store import Payload, PermanentDeliveryError, RetryableDeliveryError
from sim.service_auth import sign_request

log = logging.getLogger(__name__)

PERMANENT_HTTP = frozenset({400, 413, 422})  # the payload itself is refused
MAX_RESPONSE = 64 * 1024


class AlarmConflictError(PermanentDeliveryError):
    """The alarm center holds other content under this alarm's id (409): not delivered."""


def _opener(base_url: str, tls: ssl.SSLContext | None, what: str) -> urllib.request.OpenerDirector:
    """No proxies (these peers are on the bank's network); for ``https``, only ``tls``.

    An ``https`` URL without the host's TLS context is refused here, at start-up, rather
    than verified against the system's store at the first alarm: a bank peer is trusted
    through the bank's CA and nothing else.
    """
    scheme = urllib.parse.urlsplit(base_url).scheme
    if scheme not in ("http", "https"):
        raise ConfigError(what, "", f"{base_url}: not an http:// or https:// URL")
    if scheme == "http":
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    if tls is None:
        raise ConfigError(what, "", f"{base_url}: https needs the host's TLS files (--tls-dir)")
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls)
    )


def _http(
    opener: urllib.request.OpenerDirector,
    url: str,
    body: bytes | None,
    timeout: float,
    key: bytes,
    clock: Clock,
) -> tuple[int, bytes]:
    """(status, body) of one signed request through ``opener``."""
    method = "GET" if body is None else "POST"
    request = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    # signed as late as possible, over the exact target urllib will send
    signature = sign_request(key, method, request.selector, body or b"", clock=clock)
    for name, value in signature.items():
        request.add_header(name, value)
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read(MAX_RESPONSE)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(MAX_RESPONSE)
    except urllib.error.URLError as exc:
        raise RetryableDeliveryError(f"{url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise RetryableDeliveryError(f"{url}: {type(exc).__name__}: {exc}") from exc


def _error_text(body: bytes) -> str:
    try:
        decoded = json.loads(body)
        return str(decoded.get("error", decoded)) if isinstance(decoded, dict) else str(decoded)
    except ValueError:
        return body[:200].decode("utf-8", "replace")


class _SignedClient:
    """What both of the host's HTTP peers need: the URL, an opener for it (the host's
    client certificate for https), the signing key and the clock that stamps requests."""

    option = ""  # the host option naming the URL, for error messages

    def __init__(
        self,
        base_url: str,
        key: bytes,
        *,
        timeout: float = 5.0,
        clock: Clock | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._opener = _opener(base_url, tls, self.option)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._key = key
        self.clock = clock or SystemClock()

    async def _request(self, url: str, body: bytes | None) -> tuple[int, bytes]:
        """One signed request, off the event loop: (status, answer body)."""
        return await asyncio.to_thread(
            _http, self._opener, url, body, self.timeout, self._key, self.clock
        )


class AlarmDeliverer(_SignedClient):
    """POSTs an alarm to ``base_url + '/alarms'``, signed with ``key``; 400/413/422 are
    permanent, 409 a conflict, the rest (refused, timeout, TLS handshake, 401, 5xx, a
    misrouted 404) retryable. ``tls`` is the host's client context, for an https URL."""

    option = "--alarm-center"

    @property
    def url(self) -> str:
        return self.base_url + "/alarms"

    async def __call__(self, payload: Payload) -> None:
        url = self.url
        if payload.get("update"):  # a follow-up to an alarm already sent (same destination,
            # so the outbox's per-destination order delivers it after the alarm itself)
            url = f"{self.url}/{urllib.parse.quote(str(payload['alarm_id']))}/updates"
            payload = {k: v for k, v in payload.items() if k not in ("update", "alarm_id")}
        body = json.dumps(payload, allow_nan=False).encode()
        status, answer = await self._request(url, body)
        if 200 <= status < 300:
            return
        text = f"alarm center answered {status}: {_error_text(answer)}"
        if status == 409:
            log.error("ALARM CONFLICT, not delivered, needs a person: %s", text)
            raise AlarmConflictError(text)
        if status in PERMANENT_HTTP:
            raise PermanentDeliveryError(text)
        if status == 401:
            log.error("outbox: %s (the host key differs from the center's, or the clocks)", text)
        elif 400 <= status < 500:
            log.error("outbox: %s (check the alarm center URL %s)", text, self.url)
        raise RetryableDeliveryError(text)


class CarrierLocator(_SignedClient):
    """Asks the carrier where a terminal is (signed with ``key``, over ``tls`` for an
    https URL); ``fill_location`` is the alarm prepare hook."""

    option = "--carrier"

    async def locate(self, terminal_id: str) -> dict[str, Any] | None:
        """The carrier's answer, or None when it does not know the terminal (400/404)."""
        url = f"{self.base_url}/locate?" + urllib.parse.urlencode({"terminal_id": terminal_id})
        status, answer = await self._request(url, None)
        if status in (400, 404):
            log.error("carrier cannot locate terminal %s: %s", terminal_id, _error_text(answer))
            return None
        if status != 200:
            text = f"carrier answered {status}: {_error_text(answer)}"
            if status == 401:
                log.error("outbox: %s (the host key differs from the carrier's)", text)
            raise RetryableDeliveryError(text)
        try:
            found = json.loads(answer)
            return {
                "lat": float(found["lat"]),
                "lon": float(found["lon"]),
                "accuracy_m": float(found["accuracy_m"]),
                "cell_id": str(found["cell_id"]),
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryableDeliveryError(f"carrier sent a malformed answer: {exc}") from None

    async def fill_location(self, payload: Payload) -> Payload:
        """An alarm whose terminal had no location gets the carrier's, looked up now.

        An unknown terminal leaves the location ``none``: the alarm goes out regardless.
        """
        location = payload.get("location")
        if not isinstance(location, dict) or location.get("source") != "none":
            return payload
        found = await self.locate(str(payload.get("terminal_id", "")))
        if found is None:
            return payload
        return {**payload, "location": {**found, "source": "carrier", "age": 0}}
