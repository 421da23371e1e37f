"""Who may talk to the bank's back-office services: the host's signed requests, the
operator's bearer token, and the secret files both come from.

The alarm center and the carrier answer plain HTTP on the bank's network (TLS is a later
step, see docs/security.md). Without authentication anyone who can reach the alarm
center can post an alarm under an id the real one will use, or read who was robbed and
where. So every request the host makes is signed: HMAC-SHA256, under a key the host and
the service share, over the method, the exact request target, a timestamp, a random
nonce and the SHA-256 of the body. That proves the holder of the key sent it, that
nothing in it changed on the way, and (timestamp within :data:`FRESHNESS`, nonce never
seen before) that it is not a captured request played again. People reading alarms use
a separate credential, a bearer token, so a reader can never post and the host's key
never sits on an operator's desk.

This module is framework-free (the FastAPI glue is :mod:`sim.asgi_service`), so the
host's outbox can sign without importing a server. Secrets live in files created 0600,
and a file that others can read is refused rather than trusted.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError, ConfigError

SCHEME = "ATM-HMAC-SHA256"
TIMESTAMP_HEADER = "X-Atm-Timestamp"
NONCE_HEADER = "X-Atm-Nonce"
SIGNATURE_HEADER = "X-Atm-Signature"
FRESHNESS = 120.0  # seconds a signed request may be early or late (clock skew + transit)
MAX_NONCES = 200_000  # signed requests remembered per window; more is refused, not forgotten
MIN_KEY_BYTES = 32
MIN_TOKEN_CHARS = 24
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class AuthError(AtmError):
    """A request that proves nothing; the message says why (for the log, never a secret)."""


def _canonical(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The signed text: one line per part, so no part can bleed into the next."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((SCHEME, method.upper(), target, timestamp, nonce, digest)).encode()


def sign_request(
    key: bytes, method: str, target: str, body: bytes = b"", *, clock: Clock | None = None
) -> dict[str, str]:
    """The headers that sign one request. ``target`` is the path and query exactly as
    sent (``/locate?terminal_id=X``); a fresh nonce each call, so a retry is a new request.
    """
    timestamp = str(int((clock or SystemClock()).now().timestamp()))
    nonce = secrets.token_hex(16)
    mac = hmac.new(key, _canonical(method, target, timestamp, nonce, body), hashlib.sha256)
    return {TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce, SIGNATURE_HEADER: mac.hexdigest()}


class RequestVerifier:
    """Checks signed requests: signature, freshness, and that no nonce is used twice.

    Nonces are remembered only after the signature verified (someone without the key
    cannot fill the memory) and only for as long as their timestamp is fresh: after that
    the freshness check refuses a replay on its own. The memory is per process; a
    replay across a restart can at most repeat an alarm the center already holds under
    its id, which it answers as a duplicate.
    """

    def __init__(
        self,
        key: bytes,
        *,
        window: float = FRESHNESS,
        clock: Clock | None = None,
        max_nonces: int = MAX_NONCES,
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a host key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.window = window
        self.clock = clock or SystemClock()
        self.max_nonces = max_nonces
        self._seen: set[str] = set()
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def verify(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        """Return if the request is the host's, fresh and new; AuthError otherwise."""
        timestamp = headers.get(TIMESTAMP_HEADER)
        nonce = headers.get(NONCE_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if timestamp is None or nonce is None or signature is None:
            raise AuthError("not signed")
        if not timestamp.isdigit() or not _NONCE.fullmatch(nonce):
            raise AuthError("malformed signature headers")
        if not _SIGNATURE.fullmatch(signature.lower()):
            raise AuthError("malformed signature")
        expected = hmac.new(
            self._key, _canonical(method, target, timestamp, nonce, body), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise AuthError("bad signature")
        now = self.clock.now().timestamp()
        if abs(now - int(timestamp)) > self.window:
            raise AuthError(f"stale or future timestamp (window {self.window:g} s)")
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                self._seen.discard(heapq.heappop(self._expiry)[1])
            if nonce in self._seen:
                raise AuthError("replayed request")
            if len(self._seen) >= self.max_nonces:
                raise AuthError("too many signed requests in the window; try again")
            self._seen.add(nonce)
            heapq.heappush(self._expiry, (int(timestamp) + self.window, nonce))


def bearer_matches(expected: str | None, presented: str | None) -> bool:
    """Constant-time comparison of an operator token; no token configured never matches."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


# -- secret files ------------------------------------------------------------------------


def write_secret_file(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (0600), atomically: the file
    is created private under a temporary name and renamed, so it is never briefly
    readable by others and a reader never sees half of it. Replaces an older one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def new_host_key_file(path: str | Path) -> Path:
    """A new random host key (hex) in a 0600 file: one per run in the demo, soak, tests."""
    return write_secret_file(path, secrets.token_hex(MIN_KEY_BYTES))


def new_token_file(path: str | Path) -> Path:
    """A new random operator token in a 0600 file."""
    return write_secret_file(path, secrets.token_urlsafe(32))


def _read_secret(path: str | Path, what: str) -> str:
    source = str(path)
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read the {what}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(source, "", f"the {what} is open to others; chmod 600 it")
    if not text:
        raise ConfigError(source, "", f"the {what} is empty")
    return text


def load_host_key(path: str | Path) -> bytes:
    """The shared key for signed requests from a 0600 file of hex digits."""
    text = _read_secret(path, "host key file")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(str(path), "", "the host key file must hold hex digits") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(str(path), "", f"the host key needs at least {MIN_KEY_BYTES} bytes")
    return key


def load_token(path: str | Path) -> str:
    """The operator's bearer token from a 0600 file."""
    token = _read_secret(path, "operator token file")
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(
            str(path), "", f"the operator token needs {MIN_TOKEN_CHARS}+ characters, no spaces"
        )
    return token
