"""A small certificate authority for the demo, the soak and the tests (``atm pki init``).

A bank runs its own PKI; a lab or a CI run needs one that appears in a second and leaves
nothing behind. This one makes, in one directory (0700, every key 0600):

* ``ca.pem`` / ``ca-key.pem``: the CA every peer trusts, and nothing else;
* one server certificate per service (``host``, ``alarm-center``, ``carrier``,
  ``phone-api``), valid for ``localhost`` and ``127.0.0.1``; the host's also serves as its
  client certificate towards the alarm center and the carrier (mutual TLS);
* one client certificate per terminal, ``terminal-<ID>.pem``, whose common name is the
  terminal id: the host checks it against field 41 of every message on that connection.

Keys are ECDSA P-256 (fast to make, small on the wire), certificates SHA-256, from
``cryptography``; nothing here implements a cipher.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from atm_common.files import private_dir, write_private
from atm_common.tls import TlsFiles

SERVICES = ("host", "alarm-center", "carrier", "phone-api", "payapp")
VALIDITY = dt.timedelta(days=365)


@dataclasses.dataclass(frozen=True)
class Pki:
    """The files of one CA directory, by role."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def service(self, name: str) -> TlsFiles:
        """A service's server (and, for the host, client) material."""
        return TlsFiles(self.ca, self.directory / f"{name}.pem", self.directory / f"{name}-key.pem")

    def terminal(self, terminal_id: str) -> TlsFiles:
        """A terminal's client material: its certificate names its terminal id."""
        base = self.directory / f"terminal-{terminal_id}"
        return TlsFiles(self.ca, base.with_suffix(".pem"), Path(f"{base}-key.pem"))

    def client(self) -> TlsFiles:
        """What a person's client (the phone) needs: the CA only."""
        return TlsFiles(self.ca)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ATM runtime demo bank"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool,
    client: bool,
    now: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )
    if issuer is None:  # the CA itself
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ] * client
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
        if server:
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(signing_key, hashes.SHA256()), key


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    write_private(directory / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))
    write_private(directory / f"{stem}-key.pem", _key_pem(key))


def make_pki(directory: Path, terminals: Iterable[str], now: dt.datetime | None = None) -> Pki:
    """Create a CA, the services' certificates and one per terminal in ``directory``."""
    when = now or dt.datetime.now(dt.UTC)
    private_dir(directory)
    ca = _issue("ATM runtime demo CA", None, server=False, client=False, now=when)
    _write(directory, "ca", *ca)
    for service in SERVICES:
        _write(directory, service, *_issue(service, ca, server=True, client=True, now=when))
    for terminal_id in terminals:
        cert_key = _issue(terminal_id, ca, server=False, client=True, now=when)
        _write(directory, f"terminal-{terminal_id}", *cert_key)
    return Pki(directory)
