"""PC/SC card reader: EMV contact cards through pcscd (pyscard's ``smartcard.scard``).

Why the low-level ``scard`` API rather than pyscard's object layer: every call returns the
PC/SC result code, which :data:`RESULTS` turns into our exception tree (service gone ->
:class:`DeviceUnavailable`, card gone or mute -> :class:`CardUnreadable`), and waits are
pcscd's own ``SCardGetStatusChange`` timeouts, so nothing here sleeps.

Behaviour worth knowing:

* **pcscd restarts and reader unplugs** never crash the terminal: the monitoring context
  is dropped and re-established on the next call; meanwhile calls raise
  :class:`DeviceUnavailable` and :meth:`status` says ``OFFLINE``.
* **Time** comes from the injected clock: deadlines are ``clock.monotonic()`` based, and
  each wait slice that expires is reported with ``clock.advance()``, so a manual clock
  follows the real waits and the system clock just observes them.
* **Mute cards** cannot hang the terminal: the EMV read runs in a worker thread with its
  own PC/SC context; if it does not finish within ``read_timeout`` the read fails naming
  the step in flight, and the worker is left to end when the card is pulled.
* **Eject** on a dip reader means "wait until the customer pulls the card"
  (``motorised=True`` first asks the reader to eject). **Retain**: a plain PC/SC reader
  has no capture bin, so :meth:`retain` records the capture (``retained_count``) and
  the reader ignores that card until it is removed, so no new session starts with it
  (the card is told apart by pcscd's insertion counter; a pcscd restart forgets it).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from smartcard import scard

from atm_common.clock import Clock, SystemClock
from atm_common.errors import AtmError, ConfigError, LocalProtocolError
from terminal.drivers.base import DeviceStatus, InfoValue
from terminal.drivers.card_reader.atr import Atr, AtrError, parse_atr
from terminal.drivers.card_reader.base import CardData, CardReader, CardUnreadable
from terminal.drivers.card_reader.emv import DEFAULT_AIDS, EmvReader, EmvResult
from terminal.errors import DeviceUnavailable

log = logging.getLogger(__name__)

KIND = "card_reader"
PROTOCOLS = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
# PC/SC result code -> (name, what it means for us: "service", "reader" or "card")
RESULTS: dict[int, tuple[str, str]] = {
    0x8010001D: ("SCARD_E_NO_SERVICE", "service"),
    0x8010001E: ("SCARD_E_SERVICE_STOPPED", "service"),
    0x80100003: ("SCARD_E_INVALID_HANDLE", "service"),
    0x80100013: ("SCARD_F_COMM_ERROR", "service"),
    0x80100001: ("SCARD_F_INTERNAL_ERROR", "service"),
    0x8010002E: ("SCARD_E_NO_READERS_AVAILABLE", "reader"),
    0x80100009: ("SCARD_E_UNKNOWN_READER", "reader"),
    0x80100017: ("SCARD_E_READER_UNAVAILABLE", "reader"),
    0x8010000C: ("SCARD_E_NO_SMARTCARD", "card"),
    0x80100069: ("SCARD_W_REMOVED_CARD", "card"),
    0x80100016: ("SCARD_E_NOT_TRANSACTED", "card"),
    0x80100068: ("SCARD_W_RESET_CARD", "card"),
    0x80100067: ("SCARD_W_UNPOWERED_CARD", "card"),
    0x80100066: ("SCARD_W_UNRESPONSIVE_CARD", "card"),
    0x8010000F: ("SCARD_E_PROTO_MISMATCH", "card"),
    0x8010000B: ("SCARD_E_SHARING_VIOLATION", "card"),
}
TIMEOUT = 0x8010000A


def describe(rv: int) -> str:
    code = rv & 0xFFFFFFFF
    name = RESULTS.get(code, ("", ""))[0] or f"0x{code:08X}"
    return f"{name}: {scard.SCardGetErrorMessage(rv)}"


def _category(rv: int) -> str:
    return RESULTS.get(rv & 0xFFFFFFFF, ("", "other"))[1]


def _present(state: int) -> bool:
    return bool(state & scard.SCARD_STATE_PRESENT)


class _ReadJob(threading.Thread):
    """One EMV read on its own PC/SC context, so a mute card blocks only this thread."""

    def __init__(self, reader: str, aids: Sequence[str]) -> None:
        super().__init__(name=f"pcsc-read {reader}", daemon=True)
        self.reader, self.aids = reader, aids
        self.step = "connect"
        self.done = threading.Event()
        self.atr = b""
        self.result: EmvResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._read()
        except BaseException as exc:  # handed to the caller's thread, which re-raises it
            self.error = exc
        finally:
            self.done.set()

    def _set_step(self, step: str) -> None:
        self.step = step

    def _fail(self, rv: int) -> AtmError:
        if _category(rv) in ("service", "reader"):
            return DeviceUnavailable(KIND, f"reader lost during {self.step} ({describe(rv)})")
        return CardUnreadable(
            KIND, f"card removed or not answering during {self.step} ({describe(rv)})"
        )

    def _read(self) -> EmvResult:
        rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rv != scard.SCARD_S_SUCCESS:
            raise DeviceUnavailable(KIND, f"pcscd unavailable ({describe(rv)})")
        try:
            rv, card, protocol = scard.SCardConnect(
                context, self.reader, scard.SCARD_SHARE_SHARED, PROTOCOLS
            )
            if rv != scard.SCARD_S_SUCCESS:
                raise self._fail(rv)
            try:
                rv, _, _, _, atr = scard.SCardStatus(card)
                self.atr = bytes(atr) if rv == scard.SCARD_S_SUCCESS else b""

                def transmit(apdu: bytes) -> tuple[bytes, int, int]:
                    rv, response = scard.SCardTransmit(card, protocol, list(apdu))
                    if rv != scard.SCARD_S_SUCCESS:
                        raise self._fail(rv)
                    if len(response) < 2:
                        raise CardUnreadable(KIND, f"no status word during {self.step} (removed?)")
                    return bytes(response[:-2]), response[-2], response[-1]

                return EmvReader(transmit, self.aids, on_step=self._set_step).read()
            finally:
                scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        finally:
            scard.SCardReleaseContext(context)


class PcscCardReader(CardReader):
    """A card reader behind pcscd, chosen by a name pattern (substring or regex)."""

    blocking = True

    def __init__(
        self,
        reader: str = "Virtual PCD",
        clock: Clock | None = None,
        *,
        read_timeout: float = 5.0,
        poll_interval: float = 0.5,
        aids: Sequence[str] = DEFAULT_AIDS,
        motorised: bool = False,
    ) -> None:
        super().__init__()
        if read_timeout <= 0 or poll_interval <= 0:
            raise ConfigError("config", "devices.card_reader", "timeouts must be positive")
        try:
            self._regex: re.Pattern[str] | None = re.compile(reader)
        except re.error:
            self._regex = None  # not a regex: substring match only
        self._pattern = reader
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._read_timeout, self._poll = read_timeout, poll_interval
        self._aids, self._motorised = tuple(aids), motorised
        self._context: Any = None
        self._reader: str | None = None
        self._state: int = scard.SCARD_STATE_UNAWARE
        self._atr: bytes | None = None
        self._captured: int | None = None  # event counter of a retained card still inside
        self._retained = 0
        self._stuck: _ReadJob | None = None
        self._offline: str | None = None

    def __repr__(self) -> str:
        return (
            f"PcscCardReader(reader={self._reader or self._pattern!r}, retained={self._retained})"
        )

    # -- diagnostics -----------------------------------------------------------------------

    @property
    def reader_name(self) -> str | None:
        return self._reader

    @property
    def atr(self) -> bytes | None:
        """ATR of the card present (or last seen), for diagnostics."""
        return self._atr

    def atr_info(self) -> Atr | None:
        if not self._atr:
            return None
        try:
            return parse_atr(self._atr)
        except AtrError as exc:
            log.warning("card ATR is malformed: %s", exc)
            return None

    def reader_states(self) -> list[tuple[str, bool, bytes]]:
        """(name, card present, ATR) for every reader pcscd offers."""
        context = self._ensure_context()
        names = self._list(context)
        if not names:
            return []
        rv, states = scard.SCardGetStatusChange(
            context, 0, [(n, scard.SCARD_STATE_UNAWARE) for n in names]
        )
        if rv != scard.SCARD_S_SUCCESS:
            self._fail(rv, "reading reader states")
        return [(name, _present(state), bytes(atr)) for name, state, atr in states]

    # -- connection upkeep -------------------------------------------------------------------

    def _went_offline(self, reason: str) -> DeviceUnavailable:
        if reason != self._offline:
            log.warning("card reader offline: %s", reason)
            self._offline = reason
        return DeviceUnavailable(KIND, reason)

    def _drop_context(self) -> None:
        if self._context is not None:
            scard.SCardReleaseContext(self._context)  # result ignored: it may be dead
        self._context, self._reader = None, None
        self._state, self._captured = scard.SCARD_STATE_UNAWARE, None

    def _fail(self, rv: int, doing: str) -> NoReturn:
        if _category(rv) == "service":
            self._drop_context()
        elif _category(rv) == "reader":
            self._reader, self._state = None, scard.SCARD_STATE_UNAWARE
        raise self._went_offline(f"{doing}: {describe(rv)}")

    def _ensure_context(self) -> Any:
        if self._context is None:
            rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if rv != scard.SCARD_S_SUCCESS:
                raise self._went_offline(f"pcscd unavailable ({describe(rv)})")
            self._context = context
        return self._context

    def _list(self, context: Any) -> list[str]:
        rv, names = scard.SCardListReaders(context, [])
        if rv == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if rv != scard.SCARD_S_SUCCESS:
            self._fail(rv, "listing readers")
        return list(names)

    def readers(self) -> list[str]:
        """Every reader pcscd offers (DeviceUnavailable when pcscd is down)."""
        return self._list(self._ensure_context())

    def _matches(self, name: str) -> bool:
        return self._pattern in name or bool(self._regex and self._regex.search(name))

    def _ensure_reader(self) -> tuple[Any, str]:
        context = self._ensure_context()
        if self._reader is None:
            names = self._list(context)
            found = next((n for n in names if self._matches(n)), None)
            if found is None:
                offered = ", ".join(names) or "none"
                raise self._went_offline(f"no reader matches {self._pattern!r} (pcscd: {offered})")
            self._reader, self._state = found, scard.SCARD_STATE_UNAWARE
            if self._offline is not None:
                log.info("card reader back: %s", found)
            self._offline = None
        return context, self._reader

    def _status_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the reader's state to change; True if it did."""
        for attempt in (1, 2):
            context, reader = self._ensure_reader()
            rv, states = scard.SCardGetStatusChange(
                context, int(timeout * 1000), [(reader, self._state)]
            )
            if (rv & 0xFFFFFFFF) == TIMEOUT:
                return False
            if rv == scard.SCARD_S_SUCCESS:
                break
            if _category(rv) == "service" and attempt == 1:
                self._drop_context()  # stale after a pcscd restart: one fresh try
                continue
            self._fail(rv, "watching the reader")
        state = states[0][1]
        if state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
            self._reader, self._state = None, scard.SCARD_STATE_UNAWARE
            raise self._went_offline(f"reader {reader} is gone")
        self._state = state & ~scard.SCARD_STATE_CHANGED
        if _present(state):
            self._atr = bytes(states[0][2])
        return True

    def _current(self) -> int:
        self._status_change(0.0)
        return self._state

    def _wait_until(self, wanted: Callable[[int], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        while not wanted(self._current()):
            wait = self._poll
            if deadline is not None:
                wait = min(wait, deadline - self._clock.monotonic())
                if wait <= 0:
                    return False
            if not self._status_change(wait):
                self._clock.advance(wait)
        return True

    def _new_card(self, state: int) -> bool:
        if not _present(state):
            self._captured = None
            return False
        return self._captured is None or state >> 16 != self._captured

    # -- the CardReader hooks ------------------------------------------------------------------

    def _do_open(self) -> None:
        # pcscd down or no reader yet: logged, status() says OFFLINE, every call retries.
        with contextlib.suppress(DeviceUnavailable):
            self._ensure_reader()

    def _do_close(self) -> None:
        self._drop_context()

    def _do_status(self) -> DeviceStatus:
        try:
            self._current()
        except DeviceUnavailable:
            return DeviceStatus.OFFLINE
        return DeviceStatus.OK

    def _do_info(self) -> dict[str, InfoValue]:
        """The reader pcscd gave us and the ATR of the card in it (DeviceUnavailable when
        pcscd or the reader is gone)."""
        present = _present(self._current())
        info: dict[str, InfoValue] = {"reader": self._reader or self._pattern}
        info["card_present"] = present
        if present and self._atr:
            info["atr"] = self._atr.hex(" ").upper()
            parsed = self.atr_info()
            if parsed is not None:
                info["atr_protocols"] = tuple(f"T={t}" for t in parsed.protocols)
        return info

    def _do_last_error(self) -> str | None:
        """Why the reader is offline, while it is."""
        return f"{KIND}: {self._offline}" if self._offline is not None else None

    def _do_wait_for_card(self, timeout: float | None) -> bool:
        return self._wait_until(self._new_card, timeout)

    def _do_read_card(self) -> CardData:
        if self._stuck is not None:
            if not self._stuck.done.is_set():
                step = self._stuck.step
                raise CardUnreadable(KIND, f"card still not answering {step}; remove it")
            log.debug("abandoned read ended: %s", self._stuck.error)
            self._stuck = None
        state = self._current()
        if not _present(state):
            raise CardUnreadable(KIND, "no card in the reader")
        if not self._new_card(state):
            raise CardUnreadable(KIND, "the card in the reader was retained; remove it first")
        job = _ReadJob(self._reader or "", self._aids)
        job.start()
        deadline = self._clock.monotonic() + self._read_timeout
        while not job.done.is_set():
            wait = min(self._poll, deadline - self._clock.monotonic())
            if wait <= 0:
                self._stuck = job
                raise CardUnreadable(
                    KIND,
                    f"card stopped answering during {job.step}: no response within "
                    f"{self._read_timeout:g} s (mute card)",
                )
            if not job.done.wait(wait):
                self._clock.advance(wait)
        self._atr = job.atr or self._atr
        if job.error is not None:
            raise job.error
        assert job.result is not None
        log.debug("read %s via %s", job.result.aid, job.result.selected_by)
        return job.result.card

    def _do_eject(self, take_timeout: float) -> bool:
        if self._motorised:
            self._present_card()
        taken = self._wait_until(lambda state: not _present(state), take_timeout)
        if not taken:
            log.info("card not taken within %g s", take_timeout)
        return taken

    def _present_card(self) -> None:
        """Motorised readers: ask pcscd to eject (SCARD_EJECT_CARD); best effort."""
        context, reader = self._ensure_reader()
        rv, card, _ = scard.SCardConnect(context, reader, scard.SCARD_SHARE_SHARED, PROTOCOLS)
        if rv == scard.SCARD_S_SUCCESS:
            rv = scard.SCardDisconnect(card, scard.SCARD_EJECT_CARD)
        if rv != scard.SCARD_S_SUCCESS:
            log.info("eject request not honoured: %s", describe(rv))

    def _do_retain(self) -> None:
        state = self._current()
        if not _present(state):
            raise LocalProtocolError("card_reader: retain with no card in the reader")
        self._captured = state >> 16
        self._retained += 1
        log.warning("PC/SC reader has no capture bin: card marked retained until removed")

    def _do_retained_count(self) -> int:
        return self._retained
