"""The host's key material and its HSM-like operations.

What the host holds per terminal: in ``tdes`` mode the terminal master key (TMK, shared
with the PIN pad by a key ceremony) and the working keys it issued by key exchange (the
PIN key TPK and MAC key TAK), stored only as cryptograms under the host's local master
key (LMK); in ``aes-dukpt`` mode nothing per terminal but the initial key id, since
every transaction key derives from the base derivation key (BDK) and the message's KSN.
No clear key ever reaches the database, a log or a message.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Mapping

from atm_common.crypto import dukpt
from atm_common.crypto.data import Direction, derive_tdes_data_key, seal, unseal
from atm_common.crypto.mac import aes_cmac, retail_mac
from atm_common.crypto.pinblock import recover_pin_format0, recover_pin_format4, verify_ibm3624
from atm_common.crypto.tdes import decrypt_block, encrypt_block
from atm_common.crypto.tdes import key_check_value as kcv
from atm_common.errors import KeyUnavailable, RemoteProtocolError
from host_link.codes import is_key_exchange

TDES, AES_DUKPT = "tdes", "aes-dukpt"
SECURITY_MODES = (TDES, AES_DUKPT)

SCHEMA = """
CREATE TABLE IF NOT EXISTS terminal_keys (
    terminal_id TEXT PRIMARY KEY,
    tpk_under_lmk TEXT NOT NULL,
    tak_under_lmk TEXT NOT NULL,
    issued_at TEXT NOT NULL
);
"""


@dataclasses.dataclass(frozen=True, repr=False)
class TerminalKeys:
    terminal_id: str
    mode: str
    tmk: bytes = b""
    initial_key_id: bytes = b""

    def __repr__(self) -> str:
        return f"TerminalKeys({self.terminal_id}, {self.mode})"


class KeyStore:
    """Per-terminal keys and the operations that use them."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        lmk: bytes,
        bdk_aes: bytes | None,
        terminals: Mapping[str, TerminalKeys],
    ) -> None:
        self.conn = conn
        self._lmk = lmk
        self._bdk = bdk_aes
        self.terminals = dict(terminals)
        self._cache: dict[str, tuple[bytes, bytes]] = {}
        self._wrapped: dict[str, tuple[str, str]] = {}  # what each cache entry came from
        # True when other host processes serve the same database (atm host --workers):
        # a key exchange there replaces keys this process holds, so every use reads the
        # stored (wrapped) keys by primary key and unwraps again only when they changed
        self.shared = False
        conn.executescript(SCHEMA)

    def __repr__(self) -> str:
        return f"KeyStore(terminals={sorted(self.terminals)})"

    def terminal(self, terminal_id: str) -> TerminalKeys:
        try:
            return self.terminals[terminal_id]
        except KeyError:
            raise KeyUnavailable(f"unknown terminal {terminal_id}") from None

    # -- key exchange (tdes) --

    def issue_working_keys(self, terminal_id: str, now: str) -> dict[str, str]:
        """New TPK and TAK for a terminal: stored under the LMK, returned under its TMK."""
        term = self.terminal(terminal_id)
        if term.mode != TDES:
            raise KeyUnavailable(f"terminal {terminal_id} uses {term.mode}: no key exchange")
        tpk, tak = os.urandom(16), os.urandom(16)
        wrapped = _wrap(self._lmk, tpk), _wrap(self._lmk, tak)
        self.conn.execute(
            "INSERT INTO terminal_keys VALUES (?,?,?,?) ON CONFLICT (terminal_id) DO UPDATE SET"
            " tpk_under_lmk = excluded.tpk_under_lmk, tak_under_lmk = excluded.tak_under_lmk,"
            " issued_at = excluded.issued_at",
            (terminal_id, *wrapped, now),
        )
        self._cache[terminal_id] = (tpk, tak)
        self._wrapped[terminal_id] = wrapped
        return {
            "TPK": _wrap(term.tmk, tpk),
            "TPKKCV": kcv(tpk),
            "TAK": _wrap(term.tmk, tak),
            "TAKKCV": kcv(tak),
        }

    def _working(self, terminal_id: str) -> tuple[bytes, bytes]:
        """(TPK, TAK), unwrapped from the database once, then kept in memory (as an HSM
        would keep them loaded): every message needs them twice, for the MAC in and out."""
        cached = self._cache.get(terminal_id)
        if cached is not None and not self.shared:
            return cached
        row = self.conn.execute(
            "SELECT tpk_under_lmk, tak_under_lmk FROM terminal_keys WHERE terminal_id = ?",
            (terminal_id,),
        ).fetchone()
        if row is None:
            raise KeyUnavailable(f"terminal {terminal_id} has no working keys: key exchange first")
        if cached is not None and self._wrapped.get(terminal_id) == (row[0], row[1]):
            return cached
        keys = _unwrap(self._lmk, row[0]), _unwrap(self._lmk, row[1])
        self._cache[terminal_id] = keys
        self._wrapped[terminal_id] = (row[0], row[1])
        return keys

    def _dukpt_key(
        self, term: TerminalKeys, message: Mapping[str, str], usage: dukpt.KeyUsage
    ) -> bytes:
        if self._bdk is None:
            raise KeyUnavailable("the host has no AES BDK")
        try:
            ksn = dukpt.AesKsn.parse(message.get("53", ""))
        except ValueError as exc:
            raise KeyUnavailable(f"bad KSN from {term.terminal_id}: {exc}") from None
        if ksn.initial_key_id != term.initial_key_id:
            raise KeyUnavailable(f"KSN from {term.terminal_id} names another initial key")
        if not dukpt.aes_counter_allowed(ksn.counter):
            # no conforming PIN pad sends it (X9.24-3 skips such counters and stops at
            # end of life): a forged or broken KSN, refused before any key is derived
            raise KeyUnavailable(
                f"KSN from {term.terminal_id} has a counter beyond the ANSI X9.24-3 limit"
                f" (more than {dukpt.AES_MAX_ONE_BITS} one-bits)"
            )
        initial = dukpt.aes_initial_key(self._bdk, ksn.initial_key_id)
        return dukpt.aes_working_key(initial, ksn, usage)

    # -- operations --

    def mac(self, message: Mapping[str, str], data: bytes) -> bytes:
        """MAC ``data`` with the key this message is protected by (the Authenticator API)."""
        term = self.terminal(message.get("41", ""))
        if term.mode == TDES:
            key = term.tmk if is_key_exchange(message) else self._working(term.terminal_id)[1]
            return retail_mac(key, data)
        return aes_cmac(self._dukpt_key(term, message, dukpt.KeyUsage.MAC_BOTH), data)[:8]

    sign = mac  # host_link.authentication.Authenticator

    def _data_key(self, message: Mapping[str, str], direction: Direction) -> bytes:
        """The terminal's data key of ``direction`` (see atm_common.crypto.data): derived
        from its TAK (tdes), or the DUKPT data key of the message's KSN."""
        term = self.terminal(message.get("41", ""))
        if term.mode == TDES:
            return derive_tdes_data_key(self._working(term.terminal_id)[1], direction)
        return self._dukpt_key(term, message, direction.dukpt_usage)

    def encrypt_response_data(self, request: Mapping[str, str], plaintext: bytes) -> bytes:
        """Seal private data for the response to ``request`` (its terminal, its KSN)."""
        return seal(self._data_key(request, Direction.RESPONSE), plaintext)

    def decrypt_advice_data(self, advice: Mapping[str, str], sealed: bytes) -> bytes:
        """Open an advice's sealed private data; ValueError when it does not open."""
        return unseal(self._data_key(advice, Direction.ADVICE), sealed)

    def verify_pin(
        self,
        message: Mapping[str, str],
        pan: str,
        pvk: bytes,
        offset: str,
        *,
        validation: str | None = None,
    ) -> bool:
        """Does the PIN block of ``message`` hold the PIN behind ``offset``? (An HSM's
        "verify PIN" command: the clear PIN exists only inside this call.) An undecodable
        block is a wrong PIN. Raises KeyUnavailable when no key can decrypt it."""
        try:
            candidate = self._recover_pin(message, pan)
        except (ValueError, RemoteProtocolError):
            return False
        # ``validation``: other IBM 3624 validation data than the PAN (a joint account's
        # number, against which its co-owners' codes are kept)
        return verify_ibm3624(candidate, validation or pan, pvk, offset)

    def _recover_pin(self, message: Mapping[str, str], pan: str) -> str:
        term = self.terminal(message.get("41", ""))
        block = bytes.fromhex(message.get("52") or message.get("110") or "")
        if term.mode == TDES:
            return recover_pin_format0(block, pan, self._working(term.terminal_id)[0])
        key = self._dukpt_key(term, message, dukpt.KeyUsage.PIN_ENCRYPTION)
        return recover_pin_format4(block, pan, key)


def _wrap(kek: bytes, key: bytes) -> str:
    return encrypt_block(kek, key).hex().upper()


def _unwrap(kek: bytes, text: str) -> bytes:
    return decrypt_block(kek, bytes.fromhex(text))
