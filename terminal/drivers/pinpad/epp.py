"""Serial driver for a ZT588-style encrypting PIN pad (EPP).

Why it is shaped like this: all framing lives in the sans-I/O
:mod:`~terminal.drivers.pinpad.epp_protocol`; this class only moves bytes between a
pyserial port (``/dev/ttyUSB0``, a pty, or ``sim://NAME``) and that decoder, and keeps every
wait on the injected :class:`~atm_common.clock.Clock` so a simulated customer who walks away
costs no real time. The clear PIN never reaches this process: during PIN entry the pad
reports ``*`` per digit and hands over an encrypted ISO 9564 block. Nothing here logs
frame text, keys, PINs or blocks; logs carry command codes, lengths and KCVs only.

Robustness: a response with a bad checksum (or a device ``E9``) makes the driver resend the
command, as does silence; after ``retries`` resends the call fails with a clear
:class:`DeviceTimeout` or :class:`RemoteProtocolError`. Every command is idempotent on the
device side (components carry a part number, a repeated start of an untouched entry is
re-acknowledged, the PIN block stays readable until the next entry, MAC chunks are
numbered) so a resend is safe; ``NK`` is the exception, and a resent one merely skips a
DUKPT counter value.

Keys: the pad computes MACs, derives DUKPT keys and unwraps the host's working keys; this
driver sends data and wrapped keys and gets MACs, KSNs and check values back. It needs no
``security`` option: the pad knows its mode, a bare ``PB`` answers in the pad's own block
format (0 under TDES, 4 plus the KSN under AES DUKPT) and :meth:`EppPinPad.security_mode`
asks. Pad errors meaning "no usable key" raise :class:`~atm_common.errors.KeyUnavailable`
(as :class:`~terminal.drivers.pinpad.epp_protocol.KeyFault`, still a ``DeviceFault``
with the code), so callers handle both PIN pad backends alike.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import serial

from atm_common.clock import Clock, SystemClock
from atm_common.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.pinpad import epp_protocol as proto
from terminal.drivers.pinpad.base import (
    CANCEL,
    CLEAR,
    ENTER,
    FUNCTION_KEYS,
    EntryOutcome,
    KeyEntry,
    MacKey,
    PinEntry,
    PinPad,
)
from terminal.drivers.serial_port import open_port
from terminal.errors import DeviceError, DeviceFault, DeviceTimeout, DeviceUnavailable

log = logging.getLogger(__name__)


def _key_bytes(key_hex: str, sizes: tuple[int, ...] = (16, 24)) -> bytes:
    """Parse a key given as hex; the error never echoes the key."""
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise LocalProtocolError("key is not a hex string") from None
    if len(key) not in sizes:
        wanted = " or ".join(map(str, sizes))
        raise LocalProtocolError(f"TDES key must be {wanted} bytes, got {len(key)}")
    return key


class EppPinPad(PinPad):
    """An EPP on a serial line; also offers the key-loading calls of a key ceremony."""

    def __init__(
        self,
        url: str,
        clock: Clock | None = None,
        baudrate: int = 9600,
        pin_key_slot: int = 1,
        response_timeout: float = 2.0,
        retries: int = 2,
        pin_block_format: int | None = None,
    ) -> None:
        """``pin_block_format`` None (the default) takes the pad's own format for its
        security mode; a number insists on that ISO format (the pad answers E5 if not)."""
        super().__init__()
        if retries < 0 or response_timeout <= 0:
            raise ConfigError("config", "devices.pinpad", "need retries >= 0, response_timeout > 0")
        if not 0 <= pin_key_slot <= 15 or pin_block_format not in (None, *proto.PIN_FORMATS):
            raise ConfigError("config", "devices.pinpad", "pin_key_slot 0-15, format 0/1/3/4")
        self.url = url
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._baudrate = baudrate
        self._slot = pin_key_slot
        self._response_timeout = response_timeout
        self._retries = retries
        self._format = pin_block_format
        self._port: Any = None
        self._decoder = proto.Decoder()
        self._frames: collections.deque[proto.Frame | proto.BadFrame] = collections.deque()
        self._keys: collections.deque[str] = collections.deque()
        self._touched = False  # the last key came from the screen, not the pad
        self._faulted = False
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"EppPinPad(url={self.url!r}, slot={self._slot})"

    @property
    def pin_key_slot(self) -> int:
        """The slot named in PIN entry commands (the TPK's, in tdes mode)."""
        return self._slot

    # -- life cycle ---------------------------------------------------------------------------

    def _do_open(self) -> None:
        self._port = open_port(
            self.url, self.kind, baudrate=self._baudrate, timeout=self._response_timeout
        )
        self._decoder.reset()

    def _do_close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:  # closing must stay safe
                log.debug("pinpad: error while closing %s: %s", self.url, exc)

    def _do_status(self) -> DeviceStatus:
        return DeviceStatus.FAULT if self._faulted else DeviceStatus.OK

    def _do_info(self) -> dict[str, InfoValue]:
        """Asked of the pad: model, serial, firmware (``DI``) and security mode (``SM``)."""
        info: dict[str, InfoValue] = {"port": self.url}
        info.update(self.device_info())
        info["security"] = self.security_mode()
        info["pin_key_slot"] = self._slot
        return info

    def _do_last_error(self) -> str | None:
        return self._last_error

    # -- byte pump ------------------------------------------------------------------------------

    def _pump(self, wait: float) -> None:
        """Read what arrives within ``wait`` s into the key and frame queues."""
        try:
            self._port.timeout = max(wait, 0.0)
            data = self._port.read(self._port.in_waiting or 1)
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(self.kind, f"serial read failed: {exc}") from exc
        for event in self._decoder.feed(data):
            if isinstance(event, proto.Key):
                self._keys.append(event.name)
            else:
                self._frames.append(event)

    def _send(self, text: str) -> None:
        frame = proto.encode_frame(text)
        log.debug("pinpad: -> %s (%d bytes)", text[:2], len(frame))
        try:
            self._port.write(frame)
        except (serial.SerialException, OSError) as exc:
            raise DeviceUnavailable(self.kind, f"serial write failed: {exc}") from exc

    def _await_response(self, command: str) -> tuple[int, str] | str:
        """(status, data) of ``command``'s response, or why a resend is needed."""
        deadline = self._clock.monotonic() + self._response_timeout
        while True:
            while self._frames:
                event = self._frames.popleft()
                if isinstance(event, proto.BadFrame):
                    log.warning("pinpad: bad frame (%s)", event.reason)
                    return "bad frame"
                try:
                    name, status, data = proto.parse_status(event.text)
                except RemoteProtocolError as exc:
                    log.warning("pinpad: malformed response (%s)", exc)
                    return "bad frame"
                if name == "ER" and status == proto.CHECKSUM_ERROR:
                    log.warning("pinpad: device saw a bad checksum on %s", command)
                    return "bad frame"
                if name in (command, "ER"):
                    return status, data
                log.debug("pinpad: ignoring stale %s response", name)
            remaining = deadline - self._clock.monotonic()
            if remaining <= 1e-9:
                return "timeout"
            self._pump(remaining)

    def _transact(self, text: str) -> str:
        """Send a command, resending on silence or corruption; returns the response data."""
        self._require_open()
        try:
            return self._exchange(text)
        except (DeviceError, RemoteProtocolError) as exc:
            self._last_error = str(exc)  # errors never carry key or PIN material
            raise

    def _exchange(self, text: str) -> str:
        command = text[:2]
        problem = ""
        for attempt in range(self._retries + 1):
            if attempt:
                log.info("pinpad: resending %s (attempt %d, %s)", command, attempt + 1, problem)
            self._send(text)
            outcome = self._await_response(command)
            if isinstance(outcome, tuple):
                status, data = outcome
                self._faulted = False
                if status:
                    log.warning("pinpad: %s answered error 0x%02X", command, status)
                    raise proto.fault(status, command)
                return data
            problem = outcome
        self._faulted = True
        attempts = self._retries + 1
        if problem == "timeout":
            raise DeviceTimeout(self.kind, f"no answer to {command} after {attempts} attempts")
        raise RemoteProtocolError(f"pinpad: no valid answer to {command} after {attempts} attempts")

    def _next_key(self, deadline: float) -> str | None:
        """The next key press before ``deadline`` (clock time), or None when it passed."""
        screen = self.screen_keys
        while not self._keys:
            if screen is not None and (touched := screen.take()) is not None:
                self.reported(touched)  # the screen's keys join the pad's own
                self._touched = True
                return touched
            remaining = deadline - self._clock.monotonic()
            if remaining <= 1e-9:
                return None
            self._pump(remaining if screen is None else min(remaining, 0.05))
            while self._frames:  # nothing is awaited: a late or stray frame
                log.debug("pinpad: ignoring unsolicited %r", self._frames.popleft())
        key = self._keys.popleft()
        self.reported(key)  # "*" for a PIN digit: the pad never says which
        self._touched = False
        return key

    def _end_touched_entry(self) -> None:
        """An entry the screen's key ended is still open in the pad: close it."""
        if self._touched:
            self._touched = False
            self._transact(proto.cancel_entry())

    def _do_key_pending(self) -> str | None:
        self._pump(0.0)
        return self._keys[0] if self._keys else None

    def _do_discard_pending_key(self) -> None:
        if self._keys:
            self._keys.popleft()

    def _end_after_timeout(self, timeout: float) -> None:
        self._transact(proto.cancel_entry())
        log.info("pinpad: entry timed out after %.1f s", timeout)

    # -- customer entry -------------------------------------------------------------------------

    def _do_read_pin(self, pan: str, min_digits: int, max_digits: int, timeout: float) -> PinEntry:
        deadline = self._clock.monotonic() + timeout
        self._keys.clear()  # presses from before this entry mean nothing now
        self._transact(proto.start_pin_entry(pan, self._slot, min_digits, max_digits, timeout))
        stars = 0
        while True:
            key = self._next_key(deadline)
            if key is None:
                self._end_after_timeout(timeout)
                return PinEntry(EntryOutcome.TIMEOUT)
            if key == "*":
                stars = min(stars + 1, max_digits)
            elif key == CLEAR:
                stars = 0
            elif key == CANCEL:
                log.info("pinpad: PIN entry cancelled")
                self._end_touched_entry()
                return PinEntry(EntryOutcome.CANCELLED)
            elif key == ENTER:
                break
            else:  # a pad in PIN mode must never send clear digits; never log which
                log.warning("pinpad: unexpected key class during PIN entry ignored")
        data = self._transact(proto.get_pin_block(self._format))
        block_format, digits, block, ksn = proto.parse_pin_block(data)
        if digits != stars:
            log.warning("pinpad: pad reports %d digits, %d masked presses seen", digits, stars)
        log.info("pinpad: PIN entered (%d digits, format %d)", digits, block_format)
        return PinEntry(
            EntryOutcome.ENTERED, block=block, digits=digits, block_format=block_format, ksn=ksn
        )

    def _do_read_keys(self, max_digits: int, timeout: float, function_keys: bool) -> KeyEntry:
        deadline = self._clock.monotonic() + timeout
        self._keys.clear()
        self._transact(proto.start_key_entry(max_digits, function_keys, timeout))
        digits = ""
        while True:
            key = self._next_key(deadline)
            if key is None:
                self._end_after_timeout(timeout)
                return KeyEntry(EntryOutcome.TIMEOUT)
            if key.isdigit():
                digits = (digits + key)[:max_digits]
            elif key == CLEAR:
                digits = ""
            elif key == CANCEL:
                self._end_touched_entry()
                return KeyEntry(EntryOutcome.CANCELLED)
            elif key == ENTER:
                self._end_touched_entry()
                return KeyEntry(EntryOutcome.ENTERED, digits)
            elif key in FUNCTION_KEYS and function_keys:
                self._end_touched_entry()
                return KeyEntry(EntryOutcome.ENTERED, key)
            else:
                log.warning("pinpad: key %s ignored during clear entry", key)

    # -- MACs, DUKPT and key exchange: computed in the pad ------------------------------------

    def _do_mac(self, data: bytes, key: MacKey, ksn: str | None) -> bytes:
        commands = proto.mac_commands(data, key, ksn)
        answer = ""
        for text in commands:
            answer = self._transact(text)
        log.debug("pinpad: MAC of %d bytes in %d frame(s)", len(data), len(commands))
        return proto.parse_mac(answer)

    def _do_decrypt_response_data(self, sealed: bytes, ksn: str | None) -> bytes:
        try:
            return proto.parse_data(self._transact(proto.decrypt_response_data(sealed, ksn)))
        except DeviceFault as exc:
            if exc.code == proto.BAD_PARAMETER:
                raise ValueError("response data does not open") from None
            raise

    def _do_encrypt_advice_data(self, plaintext: bytes, ksn: str | None) -> bytes:
        return proto.parse_data(self._transact(proto.encrypt_advice_data(plaintext, ksn)))

    def _do_next_ksn(self) -> str | None:
        return proto.parse_next_ksn(self._transact(proto.next_ksn()))

    def _do_install_working_keys(
        self, pin_key_under_tmk: str, mac_key_under_tmk: str
    ) -> dict[str, str]:
        text = proto.install_working_keys(
            _key_bytes(pin_key_under_tmk, (16,)), _key_bytes(mac_key_under_tmk, (16,))
        )
        kcvs = proto.parse_working_key_kcvs(self._transact(text))
        log.info("pinpad: working keys installed, TPK KCV %s, TAK KCV %s", *kcvs.values())
        return kcvs

    def security_mode(self) -> str:
        """``tdes`` or ``aes-dukpt``, as the pad reports it."""
        return proto.parse_security_mode(self._transact(proto.security_mode()))[0]

    def current_ksn(self) -> str | None:
        """The KSN of the pad's latest DUKPT transaction, without starting a new one;
        None for a TDES pad. Identifies the key (its id) and how far its counter went."""
        return proto.parse_security_mode(self._transact(proto.security_mode()))[1]

    # -- key ceremony and diagnostics ---------------------------------------------------------

    def load_component(self, slot: int, component_hex: str, *, part: int = 1) -> str:
        """Load clear component ``part`` (1 starts a new key, 2.. XOR in); returns the KCV.

        The KCV is of the key the slot now holds, for the custodians to compare.
        """
        text = proto.load_component(slot, part, _key_bytes(component_hex))
        kcv = proto.parse_kcv(self._transact(text))
        log.info("pinpad: component %d loaded into slot %02d, KCV %s", part, slot, kcv)
        return kcv

    def load_encrypted(self, slot: int, under_slot: int, key_hex: str) -> str:
        """Load a key encrypted under the key in ``under_slot`` (TMK -> PIN key); its KCV."""
        text = proto.load_encrypted(slot, under_slot, _key_bytes(key_hex))
        kcv = proto.parse_kcv(self._transact(text))
        log.info("pinpad: key loaded into slot %02d under %02d, KCV %s", slot, under_slot, kcv)
        return kcv

    def key_check_values(self) -> dict[int, str]:
        """KCV of every loaded slot, slot number -> 6 hex digits."""
        return proto.parse_key_check_values(self._transact(proto.key_check_values()))

    def device_info(self) -> dict[str, str]:
        """``model``, ``serial`` and ``firmware`` as the pad reports them."""
        return proto.parse_device_info(self._transact(proto.device_info()))
