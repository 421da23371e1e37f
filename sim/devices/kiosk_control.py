"""A person at the emulated kiosk: cards in and out, keys on the PIN pad, the cash taken.

``atm sim devices`` runs the emulators (dispenser, PIN pad, GPS on ptys; a virtual PC/SC
card reader through a real pcscd) and, beside them, a control socket (a Unix socket,
private to its owner). ``atm sim card insert --pan ...``, ``atm sim card remove``,
``atm sim card swap --pan ...``, ``atm sim pinpad press 1234 enter`` and ``atm sim cash
take`` are that person's hands, each one request and one answer (a JSON line each way),
so a kiosk started with ``atm run --config <generated>`` can be used end to end from a
second shell, the way a customer uses a real one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from atm_common.errors import AtmError
from atm_common.masking import mask_pan
from sim.devices.epp import PRESSABLE
from sim.devices.launcher import EmulatedDevices
from sim.devices.pcsc_env import SLOT_PORTS, CardProcess, PcscEnv, PcscEnvError
from sim.devices.vcard import MODES, load_seed_card

log = logging.getLogger(__name__)

NO_PCSC = "this kiosk's card reader is in-process (--card-reader sim): no card to insert here"


class ControlError(AtmError):
    """A request the emulated kiosk refused, or no ``atm sim devices`` to ask."""


def pad_keys(words: Sequence[str]) -> list[str]:
    """``["1234", "enter"]`` -> ``["1", "2", "3", "4", "ENTER"]``; ValueError names a bad key."""
    keys: list[str] = []
    for word in words:
        if word.isdigit():
            keys.extend(word)
        elif word.upper() in PRESSABLE:
            keys.append(word.upper())
        else:
            raise ValueError(f"no key {word!r} on the pad (digits, enter, cancel, f1 .. f8)")
    return keys


class KioskHands:
    """What a person can do at the emulated kiosk; each method returns one line to show."""

    def __init__(self, devices: EmulatedDevices, pcsc: PcscEnv | None, seed: Path) -> None:
        self.devices, self.pcsc, self.seed = devices, pcsc, seed
        self._card: CardProcess | None = None
        self._pan = ""

    def card_insert(self, pan: str, mode: str = "normal") -> str:
        if self.pcsc is None:
            raise ControlError(NO_PCSC)
        if self._card is not None:
            raise ControlError(
                f"card {mask_pan(self._pan)} is still in the reader: remove it first (or swap)"
            )
        if mode not in MODES:
            raise ControlError(f"--mode: one of {', '.join(MODES)}")
        try:
            profile = load_seed_card(self.seed, pan)
        except (KeyError, ValueError, OSError) as exc:
            raise ControlError(
                f"--pan: no such card in the seed {self.seed.name} ({exc})"
            ) from None
        card = self.pcsc.start_card(profile, port=SLOT_PORTS[0], mode=mode)
        try:
            card.insert()
        except PcscEnvError as exc:
            self._stop(card)
            raise ControlError(f"the card did not go in: {exc}") from None
        self._card, self._pan = card, pan
        return f"card {mask_pan(pan)} inserted into {card.reader}"

    def card_remove(self) -> str:
        if self.pcsc is None:
            raise ControlError(NO_PCSC)
        card, self._card = self._card, None
        if card is None:
            return "no card in the reader (retained by the terminal, or never inserted)"
        try:
            card.remove()
        except PcscEnvError as exc:
            log.warning("card removal: %s", exc)
        finally:
            self._stop(card)
        return f"card {mask_pan(self._pan)} taken out of the reader"

    def card_swap(self, pan: str, mode: str = "normal") -> str:
        removed = self.card_remove()
        return f"{removed}; {self.card_insert(pan, mode)}"

    def _stop(self, card: CardProcess) -> None:
        card.stop()
        if self.pcsc is not None and card in self.pcsc.cards:
            self.pcsc.cards.remove(card)

    def pinpad_press(self, words: Sequence[str]) -> str:
        try:
            keys = pad_keys(words)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        with self.devices.bridges["pinpad"].lock:
            self.devices.pinpad.press(*keys)
        shown = ["*" if k.isdigit() else k for k in keys]  # a PIN is never echoed
        return f"pressed {' '.join(shown)}"

    def cash_take(self) -> str:
        with self.devices.bridges["dispenser"].lock:
            notes = self.devices.dispenser.take_cash()
        return f"took {notes} note(s)" if notes else "no cash at the exit"

    def handle(self, request: dict[str, Any]) -> str:
        """One request (``{"do": "card_insert", "pan": ...}``) -> the answer's line."""
        actions: dict[str, Callable[[], str]] = {
            "card_insert": lambda: self.card_insert(
                str(request.get("pan", "")), str(request.get("mode", "normal"))
            ),
            "card_remove": self.card_remove,
            "card_swap": lambda: self.card_swap(
                str(request.get("pan", "")), str(request.get("mode", "normal"))
            ),
            "pinpad_press": lambda: self.pinpad_press([str(k) for k in request.get("keys", [])]),
            "cash_take": self.cash_take,
        }
        action = actions.get(str(request.get("do")))
        if action is None:
            raise ControlError(f"unknown request {request.get('do')!r}")
        return action()

    def close(self) -> None:
        if self._card is not None:
            self._stop(self._card)
            self._card = None


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(65536)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("a request is a JSON object")
            with self.server.lock:
                answer: dict[str, Any] = {"ok": True, "message": self.server.hands.handle(request)}
        except (ControlError, ValueError) as exc:
            answer = {"ok": False, "error": str(exc)}
        except AtmError as exc:  # a device or pcscd failed under the request
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.wfile.write(json.dumps(answer).encode() + b"\n")


class _Server(socketserver.UnixStreamServer):
    def __init__(self, path: str, hands: KioskHands) -> None:
        self.hands = hands
        self.lock = threading.Lock()  # one person: one request at a time
        super().__init__(path, _Handler)


@contextlib.contextmanager
def control_socket(path: Path, hands: KioskHands) -> Iterator[Path]:
    """Serve ``hands`` on a Unix socket at ``path`` (0600 by the process umask)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()  # left by a run that was killed
    server = _Server(str(path), hands)
    os.chmod(path, 0o600)
    thread = threading.Thread(target=server.serve_forever, name="kiosk-control", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def ask(path: Path, request: dict[str, Any], timeout: float = 30.0) -> str:
    """Send one request to ``atm sim devices``; its answer line (ControlError if refused)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ControlError(
                f"{path}: no `atm sim devices` answers there ({exc.strerror or exc});"
                " start it first, or give its --control path"
            ) from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"{path}: no answer from `atm sim devices`") from None
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error")))
    return str(answer.get("message"))
