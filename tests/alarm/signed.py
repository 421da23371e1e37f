"""HTTP as the bank's host and the alarm desk speak it to the alarm center and carrier:
requests signed with this run's host key, reads with this run's operator token."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sim.service_auth import sign_request

KEY = secrets.token_bytes(32)  # one per test run, never a fixed key
TOKEN = secrets.token_urlsafe(32)
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(
    url: str,
    body: bytes | dict[str, Any] | list[Any] | None = None,
    *,
    key: bytes | None = KEY,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, decoded JSON) of one request: a POST (with ``body``) signed with ``key``,
    a GET signed too (the carrier wants that) and carrying the operator ``token``."""
    data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if key is not None:
        target = request.selector
        for name, value in sign_request(key, request.get_method(), target, data or b"").items():
            request.add_header(name, value)
    if token is not None and data is None:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())
