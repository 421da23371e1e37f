"""TLS contexts for every link of the system, built the same way at both ends.

Every peer that is a machine proves who it is with a certificate from the bank's CA
(mutual TLS): the terminal to the host (its certificate names its terminal id), the host
to the alarm center and the carrier. People's clients (the phone) check the server only.
The contexts refuse anything older than TLS 1.2 and verify the peer against the one CA
given, never the system's store: a bank link trusts its own CA and nothing else.

Key logging for Wireshark (``SSLKEYLOGFILE``-style) is opt-in per context, for a lab that
needs to read its own traffic; nothing turns it on by default.
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

from atm_common.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """Where a peer's TLS material lives: the CA to trust, and its own certificate + key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def check(self, source: str, key: str) -> None:
        """Refuse missing files with a message naming the setting (no traceback later)."""
        for name, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if path is not None and not path.is_file():
                raise ConfigError(source, f"{key}.{name}", f"{path} does not exist")
        if (self.cert is None) != (self.key is None):
            raise ConfigError(source, key, "give both a certificate and its key, or neither")


def _base(purpose: ssl.Purpose, files: TlsFiles, source: str, key: str) -> ssl.SSLContext:
    files.check(source, key)
    context = ssl.create_default_context(purpose, cafile=str(files.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if files.cert is not None and files.key is not None:
        try:
            context.load_cert_chain(str(files.cert), str(files.key))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(source, key, f"cannot load {files.cert}: {exc}") from None
    return context


def server_context(
    files: TlsFiles, *, require_client_cert: bool = True, source: str = "tls", key: str = "tls"
) -> ssl.SSLContext:
    """A server's context: its certificate, and (by default) a client certificate required."""
    if files.cert is None:
        raise ConfigError(source, f"{key}.cert", "a TLS server needs a certificate")
    context = _base(ssl.Purpose.CLIENT_AUTH, files, source, key)
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    return context


def client_context(
    files: TlsFiles, *, source: str = "tls", key: str = "tls", keylog: Path | None = None
) -> ssl.SSLContext:
    """A client's context: verify the server against the CA (and its name), present ours."""
    context = _base(ssl.Purpose.SERVER_AUTH, files, source, key)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if keylog is not None:
        context.keylog_filename = str(keylog)
    return context


def peer_common_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The CN of the peer's verified certificate (a terminal's id), None without one."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    subject: tuple[tuple[tuple[str, str], ...], ...] = cert.get("subject", ())  # type: ignore[assignment]
    for rdn in subject:
        for attribute in rdn:
            if attribute[0] == "commonName":
                return attribute[1]
    return None
