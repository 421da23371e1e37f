"""ISO 9564 PIN blocks (format 0 under TDES, format 4 under AES) and IBM 3624 PIN offsets.

Format 0 binds the PIN to the PAN's 12 rightmost digits (excluding the check digit), so
a block lifted from one card is useless with another. The host never stores a PIN: it
stores the IBM 3624 *offset*, the digit-wise difference between the customer's PIN and a
"natural PIN" derived by encrypting the PAN under the PIN verification key (PVK).
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from atm_common.crypto.tdes import decrypt_block, encrypt_block
from atm_common.errors import RemoteProtocolError

DECIMALISATION = "0123456789012345"


def _pan_field(pan: str) -> bytes:
    """The 12 rightmost PAN digits before the check digit, zero-padded when shorter."""
    if not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise ValueError("PAN must be 12-19 digits")
    return bytes.fromhex("0000" + pan[:-1][-12:].rjust(12, "0"))


def clear_format0(pin: str, pan: str) -> bytes:
    """The clear ISO 9564 format 0 block (only ever built inside the PIN pad)."""
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ValueError("PIN must be 4-12 digits")
    pin_field = bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))
    return bytes(a ^ b for a, b in zip(pin_field, _pan_field(pan), strict=True))


def encrypt_format0(pin: str, pan: str, key: bytes) -> bytes:
    return encrypt_block(key, clear_format0(pin, pan))


def recover_pin_format0(block: bytes, pan: str, key: bytes) -> str:
    """Decrypt a format 0 block and return the PIN (host/HSM side only)."""
    if len(block) != 8:
        raise RemoteProtocolError("PIN block must be 8 bytes")
    clear = decrypt_block(key, block)
    pin_field = bytes(a ^ b for a, b in zip(clear, _pan_field(pan), strict=True)).hex().upper()
    if pin_field[0] != "0":
        raise RemoteProtocolError("PIN block is not ISO 9564 format 0")
    length = int(pin_field[1], 16)
    pin, pad = pin_field[2 : 2 + length], pin_field[2 + length :]
    if not 4 <= length <= 12 or not pin.isdigit() or set(pad) != {"F"}:
        raise RemoteProtocolError("PIN block does not decode to a valid PIN")
    return pin


def _natural_pin(pan: str, pvk: bytes, length: int) -> str:
    validation = pan[-16:].rjust(16, "0")
    digits = encrypt_block(pvk, bytes.fromhex(validation)).hex().upper()
    return "".join(DECIMALISATION[int(ch, 16)] for ch in digits)[:length]


def ibm3624_offset(pin: str, pan: str, pvk: bytes) -> str:
    """Offset = (PIN - natural PIN) mod 10, digit by digit. Stored instead of the PIN."""
    natural = _natural_pin(pan, pvk, len(pin))
    return "".join(str((int(p) - int(n)) % 10) for p, n in zip(pin, natural, strict=True))


def verify_ibm3624(pin: str, pan: str, pvk: bytes, offset: str) -> bool:
    """Constant-time comparison of the candidate PIN's offset with the stored one."""
    if len(pin) != len(offset):
        return False
    return hmac.compare_digest(ibm3624_offset(pin, pan, pvk), offset)


# --- ISO 9564-1 format 4 (AES) ----------------------------------------------------------


def _aes_ecb(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


def _pan_field4(pan: str) -> bytes:
    if not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise ValueError("PAN must be 12-19 digits")
    return bytes.fromhex(f"{len(pan) - 12:X}{pan}".ljust(32, "0"))


def encrypt_format4(pin: str, pan: str, key: bytes, random_fill: bytes | None = None) -> bytes:
    """ISO 9564 format 4 under an AES key: the PIN field is enciphered, XORed with the
    PAN field and enciphered again; 8 random bytes make equal PINs encrypt differently."""
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ValueError("PIN must be 4-12 digits")
    fill = random_fill if random_fill is not None else os.urandom(8)
    if len(fill) != 8:
        raise ValueError("format 4 random fill is 8 bytes")
    pin_field = bytes.fromhex(f"4{len(pin):X}{pin}".ljust(16, "A")) + fill
    intermediate = _aes_ecb(key, pin_field)
    return _aes_ecb(key, bytes(a ^ b for a, b in zip(intermediate, _pan_field4(pan), strict=True)))


def recover_pin_format4(block: bytes, pan: str, key: bytes) -> str:
    """Decipher a format 4 block (host/HSM side only)."""
    if len(block) != 16:
        raise RemoteProtocolError("a format 4 PIN block must be 16 bytes")
    intermediate = _aes_ecb(key, block, decrypt=True)
    xored = bytes(a ^ b for a, b in zip(intermediate, _pan_field4(pan), strict=True))
    text = _aes_ecb(key, xored, decrypt=True)[:8].hex().upper()
    if text[0] != "4":
        raise RemoteProtocolError("PIN block is not ISO 9564 format 4")
    length = int(text[1], 16)
    pin, pad = text[2 : 2 + length], text[2 + length :]
    if not 4 <= length <= 12 or not pin.isdigit() or (pad and set(pad) != {"A"}):
        raise RemoteProtocolError("PIN block does not decode to a valid PIN")
    return pin
