"""The key store inside an encrypting PIN pad, and the operations that use it.

Both PIN pad simulations (the in-process one and the serial EPP emulator) keep their
keys in a :class:`PinPadKeys`, so they behave identically and no key or PIN ever leaves
it: the outside gets PIN blocks, MACs, check values and key serial numbers.

Two security modes, per terminal:

* ``tdes``: a terminal master key (TMK) loaded by a key ceremony; the host's key
  exchange delivers a PIN key (TPK) and MAC key (TAK) encrypted under it. PIN blocks are
  ISO 9564 format 0; MACs ISO 9797-1 algorithm 3. Key-exchange messages are MACed with
  the TMK itself, everything else with the TAK.
* ``aes-dukpt``: an AES-128 DUKPT initial key (ANSI X9.24-3). Every PIN entry and every
  message without one advances the transaction counter; PIN blocks are format 4 under the
  transaction's PIN key, MACs AES-CMAC (first 8 bytes) under its MAC key. The counter
  follows the standard: values with more than 16 one-bits are skipped, and after the
  last allowed one (``FFFF0000``) the pad is at end of life and refuses every DUKPT
  operation until a new initial key is loaded; it never wraps to reuse old keys.
"""

from __future__ import annotations

import enum

from atm_common.crypto import dukpt
from atm_common.crypto.data import Direction, derive_tdes_data_key, seal, unseal
from atm_common.crypto.mac import aes_cmac, retail_mac
from atm_common.crypto.pinblock import encrypt_format0, encrypt_format4
from atm_common.crypto.tdes import decrypt_block
from atm_common.crypto.tdes import key_check_value as check_value
from atm_common.errors import KeyUnavailable, LocalProtocolError

TDES, AES_DUKPT = "tdes", "aes-dukpt"


class MacKey(enum.Enum):
    MASTER = "master"  # the TMK: key exchange only
    WORKING = "working"  # the TAK, or the DUKPT transaction's MAC key


def _hex_key(value: bytes | str | None, sizes: tuple[int, ...], what: str) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else bytes(value)
    except ValueError:
        raise LocalProtocolError(f"{what} is not hexadecimal") from None
    if len(raw) not in sizes:
        raise LocalProtocolError(f"{what} must be {' or '.join(map(str, sizes))} bytes")
    return raw


class PinPadKeys:
    """Keys and counters; ``repr`` shows only which keys are present."""

    def __init__(
        self,
        security: str = TDES,
        *,
        tmk: bytes | str | None = None,
        pin_key: bytes | str | None = None,
        mac_key: bytes | str | None = None,
        ik: bytes | str | None = None,
        ik_id: bytes | str | None = None,
        counter: int = 0,
    ) -> None:
        if security not in (TDES, AES_DUKPT):
            raise LocalProtocolError(f"unknown security mode {security!r}")
        self.security = security
        self.__tmk = _hex_key(tmk, (16, 24), "TMK")
        self.__tpk = _hex_key(pin_key, (16, 24), "PIN key")
        self.__tak = _hex_key(mac_key, (16,), "MAC key")
        self.__ik = _hex_key(ik, (16,), "DUKPT initial key")
        ik_id_raw = _hex_key(ik_id, (8,), "DUKPT initial key id")
        self.__ik_id = ik_id_raw or b""
        if not dukpt.aes_counter_allowed(counter):
            raise LocalProtocolError(
                f"DUKPT transaction counter {counter} is not an ANSI X9.24-3 counter"
                " (32 bits, at most 16 one-bits)"
            )
        self.__counter = counter
        self.__current: dukpt.AesKsn | None = None
        if security == AES_DUKPT and (self.__ik is None or not self.__ik_id):
            raise LocalProtocolError("aes-dukpt needs an initial key and its id")

    def __repr__(self) -> str:
        present = [
            n
            for n, k in (
                ("tmk", self.__tmk),
                ("tpk", self.__tpk),
                ("tak", self.__tak),
                ("ik", self.__ik),
            )
            if k
        ]
        return f"PinPadKeys({self.security}, keys={present})"

    # -- key loading --

    def install_working_keys(
        self, pin_key_under_tmk: str, mac_key_under_tmk: str
    ) -> dict[str, str]:
        """Decrypt the host's TPK and TAK under the TMK; returns their check values."""
        if self.security != TDES:
            raise LocalProtocolError("working keys are exchanged only in tdes mode")
        if self.__tmk is None:
            raise KeyUnavailable("no terminal master key loaded: run the key ceremony")
        tpk = decrypt_block(self.__tmk, _hex_key(pin_key_under_tmk, (16,), "TPK") or b"")
        tak = decrypt_block(self.__tmk, _hex_key(mac_key_under_tmk, (16,), "TAK") or b"")
        self.__tpk, self.__tak = tpk, tak
        return {"TPKKCV": check_value(tpk), "TAKKCV": check_value(tak)}

    def load_master_key(self, key: bytes) -> None:
        """Install a TMK the pad assembled itself from clear components (key ceremony).

        Why: an EPP XORs the custodians' components inside the pad; the result must
        become this store's TMK so key exchange and MACs under the TMK use it.
        Working keys already loaded stay until the next key exchange replaces them.
        """
        if self.security != TDES:
            raise LocalProtocolError("a master key is loaded only in tdes mode")
        self.__tmk = _hex_key(key, (16, 24), "TMK")

    def load_working_key(self, name: str, key_under_tmk: bytes) -> None:
        """Install one working key, ``"TPK"`` or ``"TAK"``, sent encrypted under the TMK.

        Why: an EPP's load-encrypted command replaces one key at a time, whereas
        :meth:`install_working_keys` is the host's key exchange of both at once.
        """
        if self.security != TDES:
            raise LocalProtocolError("working keys are loaded only in tdes mode")
        if name not in ("TPK", "TAK"):
            raise LocalProtocolError(f"unknown working key {name!r} (TPK or TAK)")
        if self.__tmk is None:
            raise KeyUnavailable("no terminal master key loaded: run the key ceremony")
        sizes = (16, 24) if name == "TPK" else (16,)
        key = decrypt_block(self.__tmk, _hex_key(key_under_tmk, sizes, name) or b"")
        if name == "TPK":
            self.__tpk = key
        else:
            self.__tak = key

    def check_values(self) -> dict[str, str]:
        out = {}
        for name, key in (("TMK", self.__tmk), ("TPK", self.__tpk), ("TAK", self.__tak)):
            if key is not None:
                out[name] = check_value(key)
        return out

    # -- DUKPT --

    def next_ksn(self) -> str | None:
        """Advance the transaction counter (DUKPT); None in tdes mode."""
        if self.security != AES_DUKPT:
            return None
        nxt = dukpt.aes_next_counter(self.__counter)
        if nxt is None:
            raise KeyUnavailable(
                "DUKPT key exhausted: the transaction counter reached its ANSI X9.24-3"
                " limit; the PIN pad needs a new initial key"
            )
        self.__counter = nxt
        self.__current = dukpt.AesKsn(self.__ik_id, self.__counter)
        return self.__current.hex()

    @property
    def counter(self) -> int:
        return self.__counter

    def _dukpt(self, ksn: str | None, usage: dukpt.KeyUsage) -> bytes:
        assert self.__ik is not None
        if not ksn:
            raise KeyUnavailable("a DUKPT operation needs the message's KSN")
        try:
            parsed = dukpt.AesKsn.parse(ksn)
        except ValueError as exc:
            raise KeyUnavailable(f"bad KSN: {exc}") from None
        if parsed.initial_key_id != self.__ik_id or parsed.counter > self.__counter:
            raise KeyUnavailable("KSN does not belong to this PIN pad")
        if not dukpt.aes_counter_allowed(parsed.counter):
            raise KeyUnavailable("KSN counter has more than 16 one-bits (ANSI X9.24-3 limit)")
        return dukpt.aes_working_key(self.__ik, parsed, usage)

    # -- operations --

    def pin_block(self, pin: str, pan: str) -> tuple[bytes, int, str]:
        """(encrypted block, ISO format, KSN or "") for a PIN typed on this pad."""
        if self.security == TDES:
            if self.__tpk is None:
                raise KeyUnavailable("no PIN key: key exchange first")
            return encrypt_format0(pin, pan, self.__tpk), 0, ""
        ksn = self.next_ksn()
        assert ksn is not None
        key = self._dukpt(ksn, dukpt.KeyUsage.PIN_ENCRYPTION)
        return encrypt_format4(pin, pan, key), 4, ksn

    def mac(self, data: bytes, key: MacKey = MacKey.WORKING, ksn: str | None = None) -> bytes:
        if self.security == TDES:
            chosen = self.__tmk if key is MacKey.MASTER else self.__tak
            if chosen is None:
                raise KeyUnavailable(f"no {key.value} MAC key loaded")
            return retail_mac(chosen[:16], data)
        return aes_cmac(self._dukpt(ksn, dukpt.KeyUsage.MAC_BOTH), data)[:8]

    def _data_key(self, direction: Direction, ksn: str | None) -> bytes:
        """The data key of ``direction``: derived from the TAK, or the DUKPT key of ``ksn``
        for data encryption (see atm_common.crypto.data); it never leaves the pad."""
        if self.security == TDES:
            if self.__tak is None:
                raise KeyUnavailable("no MAC working key: key exchange first")
            return derive_tdes_data_key(self.__tak, direction)
        return self._dukpt(ksn, direction.dukpt_usage)

    def decrypt_response_data(self, sealed: bytes, ksn: str | None = None) -> bytes:
        """Open a response's sealed private data; ValueError when it does not open."""
        return unseal(self._data_key(Direction.RESPONSE, ksn), sealed)

    def encrypt_advice_data(self, plaintext: bytes, ksn: str | None = None) -> bytes:
        """Seal an advice's private data for the host."""
        return seal(self._data_key(Direction.ADVICE, ksn), plaintext)
