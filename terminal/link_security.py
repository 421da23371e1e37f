"""The terminal's side of link security: MACs and KSNs from the PIN pad, and sign-on.

The terminal process never holds a key. It asks the PIN pad to MAC each message (the
key-exchange message under the master key, everything else under the working MAC key or
the DUKPT transaction's key) and, in DUKPT mode, for a fresh KSN for every message that
carries no PIN block. Sign-on runs the key exchange in TDES mode: the host's new TPK and
TAK arrive under the TMK, go straight into the PIN pad, and their check values must
match the host's before the terminal serves anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from atm_common.errors import SecurityError
from host_link.client import HostClient
from host_link.codec import Message
from host_link.codes import Mti, NetworkCode, is_key_exchange
from host_link.errors import HostLinkError
from terminal.drivers.pinpad.base import MacKey, PinPad

log = logging.getLogger(__name__)


class PinPadAuthenticator:
    """host_link Authenticator backed by the PIN pad."""

    def __init__(self, pinpad: PinPad) -> None:
        self.pinpad = pinpad

    def sign(self, message: Mapping[str, str], data: bytes) -> bytes:
        key = MacKey.MASTER if is_key_exchange(message) else MacKey.WORKING
        return self.pinpad.mac(data, key=key, ksn=message.get("53"))


def with_ksn(message: Mapping[str, str], pinpad: PinPad) -> Message:
    """``message`` with field 53 set to a new KSN (DUKPT pads), if it has none yet."""
    out = dict(message)
    if "53" not in out:
        ksn = pinpad.next_ksn()
        if ksn is not None:
            out["53"] = ksn
    return out


def _parse_keys(text: str) -> dict[str, str]:
    try:
        return dict(item.split("=", 1) for item in text.split(";") if item)
    except ValueError:
        raise SecurityError("key exchange response field 63 is malformed") from None


async def sign_on(host: HostClient, pinpad: PinPad) -> str:
    """Key exchange (TDES) and sign-on; returns the security mode in use."""
    ksn = pinpad.next_ksn()
    mode = "aes-dukpt" if ksn is not None else "tdes"
    if mode == "tdes":
        request = host.stamp({"t": Mti.NETWORK_REQUEST, "70": NetworkCode.KEY_EXCHANGE})
        response = await host.request(request)
        if response.get("39") != "00":
            raise HostLinkError(f"key exchange refused: response code {response.get('39')}")
        keys = _parse_keys(response.get("63", ""))
        try:
            kcvs = pinpad.install_working_keys(keys["TPK"], keys["TAK"])
        except KeyError as exc:
            raise SecurityError(f"key exchange response lacks {exc}") from None
        if kcvs.get("TPKKCV") != keys.get("TPKKCV") or kcvs.get("TAKKCV") != keys.get("TAKKCV"):
            raise SecurityError("working key check values differ from the host's: keys refused")
        log.info("working keys installed (TPK KCV %s, TAK KCV %s)", kcvs["TPKKCV"], kcvs["TAKKCV"])
    request = {"t": Mti.NETWORK_REQUEST, "70": NetworkCode.SIGN_ON}
    if ksn is not None:
        request["53"] = ksn
    response = await host.request(host.stamp(request))
    if response.get("39") != "00":
        raise HostLinkError(f"sign-on refused: response code {response.get('39')}")
    log.info("signed on to the host (%s)", mode)
    return mode
