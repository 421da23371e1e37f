"""Emulator of a ZT588-style encrypting PIN pad, for the real :class:`EppPinPad` driver.

Why it exists: CI must run the serial driver's own code (framing, retries, timeouts), so
the simulation sits on the far side of the wire. Like the in-process
:class:`~terminal.drivers.pinpad.sim.SimPinPad`, its keyboard is a script of
``Pin``/``Keys``/``Fkey``/``CANCEL``/``NO_INPUT`` entries (one consumed per entry started
by the terminal); the clear PIN lives only in name-mangled attributes here and leaves as
``*`` bytes and an encrypted ISO 9564 block.

Keys: the same :class:`~terminal.security.pinpad_keys.PinPadKeys` as SimPinPad holds them
(same options: ``security``, ``tmk``, ``pin_key``, ``mac_key``, ``ik``, ``ik_id``), so both
simulations give the same blocks, MACs, KCVs and KSNs. Slots are how the wire names its
keys: ``tmk_slot`` (0) is the TMK, ``pin_key_slot`` (1) the TPK, ``mac_key_slot`` (2) the
TAK. ``LC`` builds the TMK from components (only that slot); ``LK`` loads the TPK or the
TAK encrypted under it, ``WK`` both at once. In aes-dukpt mode those answer ``EB``, ``PE``
ignores the slot (the DUKPT register is the PIN key) and a PIN block is computed once per
entry, so a resent ``PB`` neither burns a counter nor changes the answer.

Time: key presses are sent from :meth:`poll`, one per call, each advancing the injected
clock by ``key_interval`` (0 by default, so scripted presses are instantaneous); a poll
with nothing to send advances it by the whole ``wait``, which is how a customer who walks
away costs the terminal its timeout without anyone sleeping.

Faults for tests: :meth:`garble_next` (bad checksums on responses), :meth:`mute` (ignore
commands), :meth:`inject_error` (answer the next command with an E0-EF code).

A script entry that makes no sense for the entry the terminal starts (``Keys`` during PIN
entry, an ``Fkey`` with function keys off) raises :class:`LocalProtocolError` from
:meth:`receive`: in-process (``sim://``) it reaches the test like SimPinPad's; behind a
:class:`~sim.devices.pty.PtyBridge` it stops the bridge, since the script itself is wrong.
"""

from __future__ import annotations

import base64
import collections
import logging

from atm_common.clock import Clock, SystemClock
from atm_common.crypto.dukpt import AesKsn
from atm_common.errors import ConfigError, KeyUnavailable, LocalProtocolError
from terminal.drivers.pinpad import epp_protocol as proto
from terminal.drivers.pinpad.base import FUNCTION_KEYS, MacKey
from terminal.drivers.pinpad.sim import CANCEL, DEFAULT_PIN_KEY, NO_INPUT, Entry, Fkey, Keys, Pin
from terminal.security.pinpad_keys import AES_DUKPT, TDES, PinPadKeys

log = logging.getLogger(__name__)

_OK = 0
# What a person can press (atm sim pinpad press): digits, ENTER, CANCEL, F1-F8.
PRESSABLE = (*"0123456789", "ENTER", "CANCEL", *FUNCTION_KEYS)
SUPERVISOR_SWITCH = "F8"  # terminal/supervisor/keyentry.py: reported even between entries
_KEY_HEX_LENGTHS = (32, 48)
_HEX_DIGITS = frozenset("0123456789ABCDEFabcdef")


def _parse_key(value: bytes | str, option: str) -> bytes:
    """A 16/24-byte key from bytes or hex; errors never echo it."""
    try:
        key = bytes.fromhex(value) if isinstance(value, str) else bytes(value)
    except ValueError:
        raise ConfigError("sim", f"epp.{option}", "not a hex string") from None
    if len(key) not in (16, 24):
        raise ConfigError(
            "sim", f"epp.{option}", f"TDES key must be 16 or 24 bytes, got {len(key)}"
        )
    return key


def _unhex(text: str) -> bytes:
    """Strict hex (``bytes.fromhex`` would accept spaces); ValueError answers ``E6``."""
    if len(text) % 2 or not set(text) <= _HEX_DIGITS:
        raise ValueError("not a hex string")
    return bytes.fromhex(text)


def _odd_parity(key: bytes) -> bool:
    return all(bin(byte).count("1") % 2 == 1 for byte in key)


def _force_odd_parity(key: bytes) -> bytes:
    return bytes(b ^ 1 if bin(b).count("1") % 2 == 0 else b for b in key)


class _Entry:
    """One entry started by PE or KE: the presses still to come and what was typed."""

    def __init__(self, request: str, pin_mode: bool, minimum: int, maximum: int) -> None:
        self.request = request
        self.pin_mode = pin_mode
        self.minimum, self.maximum = minimum, maximum
        self.actions: collections.deque[str] = collections.deque()
        self.untouched = True
        self.active = True
        self.typed = ""
        self.entered = False
        self.deadline = 0.0
        self.pan = ""
        self.slot = 0
        self.function_keys = False
        self.answer = ""  # the PB answer, computed once


class _MacSession:
    """A chunked MAC (``MI``/``MU``/``MF``): key choice, KSN, data so far, last chunk."""

    def __init__(self, key: MacKey, ksn: str) -> None:
        self.key, self.ksn = key, ksn
        self.data = bytearray()
        self.seq = 0


class EppEmulator:
    """Sans-I/O EPP: ``receive`` answers commands, ``poll`` emits the customer's presses."""

    def __init__(
        self,
        clock: Clock | None = None,
        pin_key: bytes | str | None = DEFAULT_PIN_KEY,
        tmk: bytes | str | None = None,
        *,
        security: str = TDES,
        mac_key: bytes | str | None = None,
        ik: bytes | str | None = None,
        ik_id: bytes | str | None = None,
        pin_key_slot: int = 1,
        tmk_slot: int = 0,
        mac_key_slot: int = 2,
        key_interval: float = 0.0,
        model: str = "ZT588-SIM",
        serial_number: str = "SIM00000001",
        firmware: str = "1.0.0",
    ) -> None:
        """Key options as SimPinPad's: ``pin_key``/``mac_key`` preload working keys (as
        after a key exchange; ``pin_key`` is ignored in aes-dukpt mode), ``tmk`` the master
        key, ``ik``/``ik_id`` an AES DUKPT initial key and its id."""
        self._clock: Clock = clock if clock is not None else SystemClock()
        slots = {"TMK": tmk_slot, "TPK": pin_key_slot, "TAK": mac_key_slot}
        if len(set(slots.values())) != 3 or not all(0 <= n <= 15 for n in slots.values()):
            raise ConfigError("sim", "epp.slots", "key slots must be distinct, 0-15")
        self._slots = slots
        for option, value in (("tmk", tmk), ("pin_key", pin_key)):
            if value is not None:
                _parse_key(value, option)  # a readable error naming the option
        try:
            self.__keys = PinPadKeys(
                security,
                tmk=tmk,
                pin_key=pin_key if security == TDES else None,
                mac_key=mac_key,
                ik=ik,
                ik_id=ik_id,
            )
        except LocalProtocolError as exc:
            raise ConfigError("sim", "epp", str(exc)) from None
        # The key's id is public (it opens every KSN); kept to report the current KSN.
        self._key_id = bytes.fromhex(ik_id) if isinstance(ik_id, str) else bytes(ik_id or b"")
        self.__components: list[bytes] = []
        self.__mac: _MacSession | None = None
        self.__script: collections.deque[Entry] = collections.deque()
        self.__entry: _Entry | None = None
        self.__typed: collections.deque[str] = collections.deque()  # a person's presses
        self._info = f"{model}|{serial_number}|{firmware}"
        self.key_interval = key_interval
        self._decoder = proto.Decoder()
        self._garble = self._mute = 0
        self._errors: collections.deque[int] = collections.deque()
        self.commands_received = 0  # every decoded command frame, answered or not

    def __repr__(self) -> str:
        return (
            f"EppEmulator({self.security}, slots={sorted(self._loaded())}, "
            f"pending={self.pending()})"
        )

    @property
    def security(self) -> str:
        return self.__keys.security

    def _loaded(self) -> dict[int, str]:
        """Slot -> KCV of every loaded TDES key."""
        return {self._slots[name]: kcv for name, kcv in self.__keys.check_values().items()}

    # -- the scripted customer (same API as SimPinPad) ----------------------------------------

    def script(self, *entries: Entry) -> None:
        """Append what the customer will do, one entry per PIN or clear entry started."""
        for entry in entries:
            if not isinstance(entry, Pin | Keys | Fkey) and entry not in (CANCEL, NO_INPUT):
                raise TypeError(f"not a PIN pad script entry: {type(entry).__name__}")
        self.__script.extend(entries)

    def pending(self) -> int:
        return len(self.__script)

    def clear_script(self) -> int:
        """Forget unconsumed entries (a customer who walked off); returns how many."""
        count = len(self.__script)
        self.__script.clear()
        return count

    # -- a person at the pad (atm sim pinpad press) ---------------------------------------------

    def press(self, *keys: str) -> None:
        """A person presses ``keys`` in order (``0``-``9``, ``ENTER``, ``CANCEL``,
        ``F1``-``F8``): into the entry under way, the rest into the next ones started;
        F8 (the supervisor switch) first in line is reported even with no entry under way.

        The pad reports them as it would real presses (a PIN digit as ``*``); a key the
        entry does not take (a function key during PIN entry) is ignored, as on a real pad.
        """
        for key in keys:
            if key not in PRESSABLE:
                raise ValueError(f"no key {key!r} on the pad (keys: {', '.join(PRESSABLE)})")
        self.__typed.extend(keys)

    def typed_pending(self) -> int:
        """Presses not yet taken by an entry."""
        return len(self.__typed)

    def clear_typed(self) -> int:
        count = len(self.__typed)
        self.__typed.clear()
        return count

    # -- fault injection ------------------------------------------------------------------------

    def garble_next(self, n: int = 1) -> None:
        """Corrupt the checksum of the next ``n`` response frames."""
        self._garble += n

    def mute(self, n: int = 1) -> None:
        """Swallow the next ``n`` commands without answering."""
        self._mute += n

    def inject_error(self, code: int) -> None:
        """Answer the next command with device error ``code`` (0xE0-0xEF)."""
        if code not in range(0xE0, 0xF0):
            raise ValueError(f"EPP error codes are 0xE0-0xEF, got 0x{code:02X}")
        self._errors.append(code)

    # -- Emulator protocol ---------------------------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for event in self._decoder.feed(data):
            if isinstance(event, proto.BadFrame):
                out += self._frame(proto.response("ER", proto.CHECKSUM_ERROR))
            elif isinstance(event, proto.Frame):
                self.commands_received += 1
                if self._mute:
                    self._mute -= 1
                    continue
                command = event.command
                if self._errors:
                    out += self._frame(proto.response(command, self._errors.popleft()))
                    continue
                status, reply = self._handle(command, event.text[2:])
                out += self._frame(proto.response(command, status, reply))
        return bytes(out)

    def poll(self, wait: float) -> bytes:
        entry = self.__entry
        idle = entry is None or not entry.active
        if idle and self.__typed and self.__typed[0] == SUPERVISOR_SWITCH:
            # the supervisor switch is reported with no entry under way (the terminal
            # looks for it between customers); every other key waits for an entry
            self.__typed.popleft()
            self._clock.advance(self.key_interval)
            return bytes([proto.KEY_CODES[SUPERVISOR_SWITCH]])
        while entry is not None and entry.active:
            if not entry.actions and self.__typed:
                entry.actions.append(self.__typed.popleft())  # one at a time: the rest wait
            if not entry.actions:
                break
            if self._clock.monotonic() >= entry.deadline:
                entry.active = False  # the pad's own backstop
                break
            entry.untouched = False
            pressed = self._press(entry, entry.actions.popleft())
            if pressed is not None:
                self._clock.advance(self.key_interval)
                return bytes([pressed])
        self._clock.advance(wait)
        return b""

    # -- internals -------------------------------------------------------------------------------

    def _frame(self, text: str) -> bytes:
        frame = proto.encode_frame(text)
        if self._garble:
            self._garble -= 1
            frame = frame[:-1] + (b"0" if frame[-1:] != b"0" else b"1")
        return frame

    def _press(self, entry: _Entry, action: str) -> int | None:
        """Apply one key press; the byte the pad reports, or None if it ignores the key."""
        if action.isdigit():
            if len(entry.typed) >= entry.maximum:
                return None
            entry.typed += action
            return proto.KEY_CODES["*" if entry.pin_mode else action]
        if action == "ENTER" and entry.pin_mode and len(entry.typed) < entry.minimum:
            return None  # too short: the pad keeps waiting
        if action in FUNCTION_KEYS and (entry.pin_mode or not entry.function_keys):
            return None  # function keys are dead during PIN entry and amount entry
        entry.active = False
        entry.entered = action == "ENTER"
        return proto.KEY_CODES[action]

    def _handle(self, command: str, params: str) -> tuple[int, str]:
        handlers = {
            "LC": self._load_component,
            "LK": self._load_encrypted,
            "DI": lambda _: (_OK, self._info),
            "PE": self._start_pin_entry,
            "KE": self._start_key_entry,
            "PB": self._pin_block,
            "KV": self._kcvs,
            "CE": self._cancel,
            "SM": self._security_mode,
            "MA": self._mac_single,
            "MI": self._mac_init,
            "MU": self._mac_update,
            "MF": self._mac_final,
            "NK": self._next_ksn,
            "WK": self._working_keys,
            "DR": self._decrypt_response_data,
            "DA": self._encrypt_advice_data,
        }
        handler = handlers.get(command)
        if handler is None:
            return proto.UNKNOWN_COMMAND, ""
        log.debug("epp-sim: %s", command)
        try:
            return handler(params)
        except ValueError:  # a malformed number or hex string in the parameters
            return proto.BAD_PARAMETER, ""

    # -- key loading ---------------------------------------------------------------------------

    def _load_component(self, params: str) -> tuple[int, str]:
        slot, part, hex_key = int(params[:2]), int(params[2:3]), params[3:]
        if slot > 15 or len(hex_key) not in _KEY_HEX_LENGTHS:
            return proto.BAD_PARAMETER, ""
        if self.security != TDES:
            return proto.WRONG_MODE, ""
        if slot != self._slots["TMK"]:
            return proto.BAD_PARAMETER, ""  # components build the master key only
        component = _unhex(hex_key)
        parts = self.__components
        if not 1 <= part <= len(parts) + 1:
            return proto.BAD_PARAMETER, ""
        if not _odd_parity(component):
            return proto.KEY_PARITY, ""
        parts = [*parts[: part - 1], component]  # reloading part n replaces it: idempotent
        if len({len(p) for p in parts}) != 1:
            return proto.BAD_PARAMETER, ""
        self.__components = parts
        key = bytes(len(component))
        for p in parts:
            key = bytes(a ^ b for a, b in zip(key, p, strict=True))
        self.__keys.load_master_key(_force_odd_parity(key) if len(parts) > 1 else key)
        return _OK, self.__keys.check_values()["TMK"]

    def _load_encrypted(self, params: str) -> tuple[int, str]:
        slot, under, hex_key = int(params[:2]), int(params[2:4]), params[4:]
        if slot > 15 or under > 15 or slot == under or len(hex_key) not in _KEY_HEX_LENGTHS:
            return proto.BAD_PARAMETER, ""
        if self.security != TDES:
            return proto.WRONG_MODE, ""
        roles = {number: name for name, number in self._slots.items() if name != "TMK"}
        if slot not in roles:
            return proto.BAD_PARAMETER, ""  # only the TPK and TAK slots take working keys
        if under != self._slots["TMK"] or "TMK" not in self.__keys.check_values():
            return proto.TMK_REQUIRED, ""
        try:
            self.__keys.load_working_key(roles[slot], _unhex(hex_key))
        except LocalProtocolError:  # a TAK must be 16 bytes
            return proto.BAD_PARAMETER, ""
        return _OK, self.__keys.check_values()[roles[slot]]

    def _working_keys(self, params: str) -> tuple[int, str]:
        if len(params) != 64:
            return proto.BAD_PARAMETER, ""
        if self.security != TDES:
            return proto.WRONG_MODE, ""
        tpk, tak = _unhex(params[:32]), _unhex(params[32:])
        try:
            kcvs = self.__keys.install_working_keys(tpk.hex(), tak.hex())
        except KeyUnavailable:
            return proto.TMK_REQUIRED, ""
        return _OK, kcvs["TPKKCV"] + kcvs["TAKKCV"]

    def _kcvs(self, _: str) -> tuple[int, str]:
        return _OK, "".join(f"{s:02d}{kcv}" for s, kcv in sorted(self._loaded().items()))

    def _security_mode(self, _: str) -> tuple[int, str]:
        if self.security != AES_DUKPT:
            return _OK, self.security
        return _OK, f"{AES_DUKPT}|{AesKsn(self._key_id, self.__keys.counter).hex()}"

    # -- MACs and DUKPT ------------------------------------------------------------------------

    @staticmethod
    def _mac_head(params: str) -> tuple[MacKey, str, str]:
        """(key, KSN, rest) from ``key(1) ksn_len(2) ksn``; ValueError when malformed."""
        keys = {code: key for key, code in proto.MAC_KEYS.items()}
        length = int(params[1:3])
        if params[:1] not in keys or length not in (0, proto.KSN_HEX):
            raise ValueError("bad MAC key selector or KSN length")
        ksn = params[3 : 3 + length]
        if len(ksn) != length:
            raise ValueError("KSN cut short")
        _unhex(ksn)
        return keys[params[:1]], ksn.upper(), params[3 + length :]

    def _mac(self, data: bytes, key: MacKey, ksn: str) -> tuple[int, str]:
        if len(data) > proto.MAX_MAC_DATA:
            return proto.BAD_PARAMETER, ""
        try:
            mac = self.__keys.mac(data, key, ksn or None)
        except KeyUnavailable:
            unknown = self.security == AES_DUKPT and ksn
            return (proto.KSN_UNKNOWN if unknown else proto.KEY_MISSING), ""
        return _OK, mac.hex().upper()

    def _mac_single(self, params: str) -> tuple[int, str]:
        key, ksn, data = self._mac_head(params)
        return self._mac(_unhex(data), key, ksn)

    def _mac_init(self, params: str) -> tuple[int, str]:
        key, ksn, rest = self._mac_head(params)
        if rest:
            return proto.BAD_PARAMETER, ""
        self.__mac = _MacSession(key, ksn)
        return _OK, ""

    def _mac_update(self, params: str) -> tuple[int, str]:
        session, seq, chunk = self.__mac, int(params[:3]), _unhex(params[3:])
        if session is None:
            return proto.BAD_PARAMETER, ""
        if seq == session.seq and seq:
            return _OK, ""  # the terminal resent the chunk we applied last
        if seq != session.seq + 1 or len(session.data) + len(chunk) > proto.MAX_MAC_DATA:
            return proto.BAD_PARAMETER, ""
        session.data += chunk
        session.seq = seq
        return _OK, ""

    def _mac_final(self, params: str) -> tuple[int, str]:
        session = self.__mac
        if session is None or params:
            return proto.BAD_PARAMETER, ""
        return self._mac(bytes(session.data), session.key, session.ksn)

    @staticmethod
    def _data_head(params: str) -> tuple[str, bytes]:
        """(KSN, data) from ``ksn_len(2) ksn data(base64)``; ValueError when malformed."""
        length = int(params[:2])
        ksn = params[2 : 2 + length]
        if length not in (0, proto.KSN_HEX) or len(ksn) != length:
            raise ValueError("bad KSN length")
        _unhex(ksn)
        return ksn.upper(), base64.b64decode(params[2 + length :], validate=True)

    def _decrypt_response_data(self, params: str) -> tuple[int, str]:
        ksn, sealed = self._data_head(params)
        try:
            plain = self.__keys.decrypt_response_data(sealed, ksn or None)
        except KeyUnavailable:
            unknown = self.security == AES_DUKPT and ksn
            return (proto.KSN_UNKNOWN if unknown else proto.KEY_MISSING), ""
        return _OK, base64.b64encode(plain).decode("ascii")  # ValueError: does not open (E6)

    def _encrypt_advice_data(self, params: str) -> tuple[int, str]:
        ksn, plain = self._data_head(params)
        try:
            sealed = self.__keys.encrypt_advice_data(plain, ksn or None)
        except KeyUnavailable:
            unknown = self.security == AES_DUKPT and ksn
            return (proto.KSN_UNKNOWN if unknown else proto.KEY_MISSING), ""
        return _OK, base64.b64encode(sealed).decode("ascii")

    def _next_ksn(self, _: str) -> tuple[int, str]:
        try:
            return _OK, self.__keys.next_ksn() or ""
        except KeyUnavailable:  # DUKPT end of life (X9.24-3): no key left to hand out
            return proto.KEY_MISSING, ""

    def _cancel(self, _: str) -> tuple[int, str]:
        self.__entry = None  # also forgets a typed PIN
        return _OK, ""

    def _begin(self, request: str, entry: _Entry, timeout: int) -> tuple[int, str] | None:
        """Common start of an entry; a response when the start is refused or repeated."""
        current = self.__entry
        if current is not None and current.active:
            if current.request == request and current.untouched:
                return _OK, ""  # the terminal resent a start we already acted on
            return proto.BUSY, ""
        entry.deadline = self._clock.monotonic() + timeout
        self.__entry = entry
        return None

    def _start_pin_entry(self, params: str) -> tuple[int, str]:
        slot, low, high = int(params[:2]), int(params[2:4]), int(params[4:6])
        timeout, pan = int(params[6:9]), params[9:]
        if not (4 <= low <= high <= 12 and pan.isdigit() and 12 <= len(pan) <= 19):
            return proto.BAD_PARAMETER, ""
        if self.security == TDES and (slot != self._slots["TPK"] or slot not in self._loaded()):
            return proto.KEY_MISSING, ""  # no TPK there (the TMK and TAK never encrypt PINs)
        entry = _Entry("PE" + params, True, low, high)
        entry.pan, entry.slot = pan, slot
        refused = self._begin(entry.request, entry, timeout)
        if refused is not None:
            return refused
        step = self.__script.popleft() if self.__script else NO_INPUT
        if isinstance(step, Pin):
            entry.actions.extend([*step._digits, "ENTER"])
        elif step is CANCEL:
            entry.actions.append("CANCEL")
        elif step is not NO_INPUT:
            self.__entry = None
            raise LocalProtocolError(
                f"pinpad script: {step!r} during PIN entry (expected Pin, CANCEL or NO_INPUT)"
            )
        return _OK, ""

    def _start_key_entry(self, params: str) -> tuple[int, str]:
        high, function_keys, timeout = int(params[:2]), params[2:3] == "1", int(params[3:6])
        entry = _Entry("KE" + params, False, 0, high)
        entry.function_keys = function_keys
        refused = self._begin(entry.request, entry, timeout)
        if refused is not None:
            return refused
        if high == 0 and not function_keys and not (self.__script and self.__script[0] is CANCEL):
            return _OK, ""  # takes only CANCEL (a waiting screen): the rest stays scripted
        step = self.__script.popleft() if self.__script else NO_INPUT
        if isinstance(step, Keys):
            entry.actions.extend([*step.digits, "ENTER"])
        elif isinstance(step, Fkey) and function_keys:
            entry.actions.append(step.key)
        elif step is CANCEL:
            entry.actions.append("CANCEL")
        elif step is not NO_INPUT:
            self.__entry = None
            hint = " with function keys disabled" if isinstance(step, Fkey) else ""
            raise LocalProtocolError(
                f"pinpad script: {step!r} during clear entry{hint} "
                "(expected Keys, Fkey, CANCEL or NO_INPUT)"
            )
        return _OK, ""

    def _pin_block(self, params: str) -> tuple[int, str]:
        native = proto.NATIVE_FORMAT[self.security]
        if params and int(params) != native:
            return proto.BAD_FORMAT, ""  # one format per security mode: 0 or 4
        entry = self.__entry
        if entry is None or not entry.pin_mode:
            return proto.NO_PIN, ""
        if not entry.entered:
            timed_out = self._clock.monotonic() >= entry.deadline
            return (proto.INPUT_TIMEOUT if timed_out else proto.NO_PIN), ""
        if not entry.answer:  # encrypt once per entry: a resend gets the same block and KSN
            try:
                block, block_format, ksn = self.__keys.pin_block(entry.typed, entry.pan)
            except KeyUnavailable:
                return proto.KEY_MISSING, ""
            entry.answer = f"{block_format}{len(entry.typed):02d}{block.hex().upper()}{ksn}"
        return _OK, entry.answer
