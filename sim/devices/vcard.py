"""A virtual EMV contact card that plugs into vsmartcard's vpcd reader over TCP.

Why: the PC/SC driver must be tested through a real pcscd, and Debian's ``vicc`` is broken
as packaged. vpcd listens on 35963/35964 (one port per slot); a card *inserts* itself by
connecting and is *removed* by disconnecting. The link (:class:`VpcdLink`) frames every
message with a 2-byte big-endian length; a 1-byte message is control (0 power off,
1 power on, 2 reset, 4 get ATR, which is answered with the ATR), a longer one is an APDU
whose response goes back the same way.

The card (:class:`EmvCard`) is built from seed card fields and behaves like a T=0 card:
SELECT and GET PROCESSING OPTIONS answer ``61xx`` (fetch with GET RESPONSE), READ RECORD
with a wrong Le answers ``6Cxx``. Broken-card modes (:data:`MODES`) let tests provoke each
failure the driver must name. Both classes are sans-I/O; :func:`serve` is the socket loop
and ``python -m sim.devices.vcard`` the CLI (``--control`` reads ``insert``/``remove``/
``quit`` from stdin and reports ``ready``/``inserted``/``atr``/``removed`` on stdout).
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import dataclasses
import logging
import os
import selectors
import socket
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from host_link.errors import FramingError
from terminal.drivers.card_reader.tlv import encode, parse_dol

log = logging.getLogger(__name__)

ATR = bytes.fromhex("3B680000") + b"ATMSIM01"  # direct convention, T=0, 8 historical bytes
MODES = ("normal", "mute", "dead", "bad_tlv", "unknown_aid", "expired", "removed_mid_read")
VISA_AID, MASTERCARD_AID = "A0000000031010", "A0000000041010"
PSE_NAME = b"1PAY.SYS.DDF01"
PDOL = bytes.fromhex("9F66049F02069F37045F2A02")  # TTQ, amount, unpredictable no., currency
PDOL_LENGTH = sum(length for _, length in parse_dol(PDOL))
EXPIRED = "2001"  # what an ``expired`` card claims, whatever its seed says
SW_OK = b"\x90\x00"
Emit = Callable[[str], None]


def default_aid(pan: str) -> str:
    """Visa for PANs starting with 4, Mastercard otherwise (the demo seed's two brands)."""
    return VISA_AID if pan.startswith("4") else MASTERCARD_AID


@dataclasses.dataclass(frozen=True)
class CardProfile:
    """What a card carries. ``expiry`` is YYMM; ``track2`` overrides the derived one."""

    pan: str
    expiry: str
    name: str = ""
    aid: str = ""
    service_code: str = "201"
    track2: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if not (self.pan.isdigit() and 12 <= len(self.pan) <= 19):
            raise ValueError("pan must be 12-19 digits")
        if not (len(self.expiry) == 4 and self.expiry.isdigit()):
            raise ValueError("expiry must be YYMM")
        if not self.aid:
            object.__setattr__(self, "aid", default_aid(self.pan))
        if not self.label:
            brand = "VISA" if self.aid.startswith("A000000003") else "MASTERCARD"
            object.__setattr__(self, "label", brand)

    @property
    def track2_equivalent(self) -> str:
        return self.track2 or f"{self.pan}={self.expiry}{self.service_code}0000000000000"


def load_seed_card(path: str | Path, pan: str) -> CardProfile:
    """The ``[[cards]]`` (or ``[[supervisor_cards]]``) entry with this PAN from a seed
    file (``aid`` key optional)."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    for card in [*data.get("cards", []), *data.get("supervisor_cards", [])]:
        if str(card.get("pan")) == pan:
            return CardProfile(
                pan=pan,
                expiry=str(card["expiry"]),
                name=str(card.get("name", "")),
                aid=str(card.get("aid", "")),
            )
    raise KeyError(f"{path}: no card with that PAN")


class VpcdLink:
    """Sans-I/O vpcd framing: bytes in, whole messages out; frames for the way back.

    A length prefix beyond ``max_message`` (an extended APDU is at most 65,544 bytes; a
    contact EMV card sees short APDUs of at most 261) is refused before any of its body
    is waited for, so a broken peer cannot make the card buffer 64 KiB of nothing.
    """

    def __init__(self, max_message: int = 2048) -> None:
        self._buffer = bytearray()
        self.max_message = max_message

    def feed(self, data: bytes) -> list[bytes]:
        """Whole messages now complete; FramingError for an oversized length prefix."""
        self._buffer += data
        messages: list[bytes] = []
        while len(self._buffer) >= 2:
            size = int.from_bytes(self._buffer[:2], "big")
            if size > self.max_message:
                self._buffer.clear()
                raise FramingError(f"vpcd message of {size} bytes exceeds {self.max_message}")
            if len(self._buffer) < 2 + size:
                break
            messages.append(bytes(self._buffer[2 : 2 + size]))
            del self._buffer[: 2 + size]
        return messages

    @staticmethod
    def frame(payload: bytes) -> bytes:
        return len(payload).to_bytes(2, "big") + payload


class Disconnect(Exception):
    """Raised by :meth:`EmvCard.receive` when the card should leave the reader now."""


def _bcd(digits: str) -> bytes:
    return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


class EmvCard:
    """The card's behaviour: control messages and APDUs in, answers (or silence) out."""

    def __init__(self, profile: CardProfile, mode: str = "normal", remove_after: int = 5) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        self.profile, self.mode, self.remove_after = profile, mode, remove_after
        self.apdus = 0
        self._pending = b""  # T=0 response data waiting for GET RESPONSE
        self.atr_served = False

    # -- the card's files ------------------------------------------------------------------

    def _records(self) -> dict[tuple[int, int], bytes]:
        p = self.profile
        expiry = EXPIRED if self.mode == "expired" else p.expiry
        yy, mm = int(expiry[:2]), int(expiry[2:])
        day = calendar.monthrange(2000 + yy, mm)[1]
        track2 = p.track2_equivalent.replace("=", "D")
        if self.mode == "expired":
            track2 = track2.replace(f"D{p.expiry}", f"D{expiry}", 1)
        entry = encode(0x4F, bytes.fromhex(p.aid)) + encode(0x50, p.label.encode())
        rec1 = encode(0x57, _bcd(track2)) + encode(0x5F20, p.name.encode("ascii", "replace"))
        if self.mode == "bad_tlv":  # 5A claims 0x7F bytes inside a 10-byte template
            rec1 = bytes.fromhex("5A7F4761739001")
        rec2 = (
            encode(0x5A, _bcd(p.pan))
            + encode(0x5F24, bytes.fromhex(f"{expiry}{day:02d}"))
            + encode(0x5F25, bytes.fromhex("240101"))
            + encode(0x5F28, bytes.fromhex("0840"))
            + encode(0x5F30, bytes.fromhex(f"0{p.service_code}"))
            + encode(0x5F34, b"\x01")
        )
        return {
            (1, 1): encode(0x70, encode(0x61, entry + encode(0x87, b"\x01"))),
            (2, 1): encode(0x70, rec1),
            (2, 2): encode(0x70, rec2),
        }

    def _select(self, name: bytes) -> bytes | None:
        if self.mode == "unknown_aid":
            return None
        if name == PSE_NAME:
            prop = encode(0x88, b"\x01") + encode(0x5F2D, b"en")
            return encode(0x6F, encode(0x84, name) + encode(0xA5, prop))
        if bytes.fromhex(self.profile.aid).startswith(name) and len(name) >= 5:
            prop = encode(0x50, self.profile.label.encode()) + encode(0x9F38, PDOL)
            return encode(0x6F, encode(0x84, bytes.fromhex(self.profile.aid)) + encode(0xA5, prop))
        return None

    # -- the link ------------------------------------------------------------------------------

    def receive(self, message: bytes) -> bytes | None:
        """Answer one vpcd message; None means say nothing. May raise :class:`Disconnect`."""
        if len(message) == 1:
            return self._control(message[0])
        if self.mode in ("mute", "dead"):
            return None
        if self.mode == "removed_mid_read" and self.apdus >= self.remove_after:
            raise Disconnect(f"removed after {self.apdus} APDUs")
        self.apdus += 1
        return self._apdu(message)

    def _control(self, code: int) -> bytes | None:
        if code in (0, 1, 2):  # power off / on / reset: the chip forgets its state
            self._pending = b""
            return None
        if code == 4 and self.mode != "dead":
            self.atr_served = True
            return ATR
        return None

    def _apdu(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        le = apdu[-1] if len(apdu) in (5, 6 + len(body)) else None
        if ins == 0xC0 and cla == 0x00:
            return self._get_response(le or 0)
        self._pending = b""
        if (cla, ins, p1) == (0x00, 0xA4, 0x04):
            fci = self._select(body)
            return b"\x6a\x82" if fci is None else self._defer(fci)
        if (cla, ins) == (0x80, 0xA8):
            if body[:1] != b"\x83" or len(body) != 2 + PDOL_LENGTH:
                return b"\x67\x00"
            afl = bytes.fromhex("10010200")  # SFI 2, records 1 to 2
            return self._defer(encode(0x77, encode(0x82, b"\x19\x80") + encode(0x94, afl)))
        if (cla, ins) == (0x00, 0xB2):
            record = self._records().get((p2 >> 3, p1))
            if record is None:
                return b"\x6a\x83"
            if (le or 256) != len(record):
                return bytes([0x6C, len(record) & 0xFF])
            return record + SW_OK
        return b"\x6e\x00" if cla not in (0x00, 0x80) else b"\x6d\x00"

    def _defer(self, data: bytes) -> bytes:
        """T=0 case 4: keep the answer and say how much there is."""
        self._pending = data
        return bytes([0x61, len(data) & 0xFF])

    def _get_response(self, le: int) -> bytes:
        if not self._pending:
            return b"\x69\x85"
        data = self._pending
        if le and le > len(data):
            return bytes([0x6C, len(data) & 0xFF])
        if le and le < len(data):
            self._pending = data[le:]
            return data[:le] + bytes([0x61, len(self._pending) & 0xFF])
        self._pending = b""
        return data + SW_OK


class CardSocket:
    """Carries one card between "in the reader" (connected to vpcd) and "in the hand".

    ``emit`` receives the events ``inserted``, ``atr`` (first ATR served: pcscd has seen
    the card), ``removed`` and ``error ...``; the CLI writes them to stdout.
    """

    def __init__(
        self, profile: CardProfile, mode: str, remove_after: int, host: str, port: int, emit: Emit
    ) -> None:
        self.profile, self.mode, self.remove_after = profile, mode, remove_after
        self.host, self.port, self.emit = host, port, emit
        self.sock: socket.socket | None = None
        self._card = EmvCard(profile, mode, remove_after)
        self._link = VpcdLink()

    @property
    def inserted(self) -> bool:
        return self.sock is not None

    def insert(self) -> bool:
        if self.sock is not None:
            self.emit("error already inserted")
            return True
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=5.0)
        except OSError as exc:
            self.emit(f"error connect {self.host}:{self.port}: {exc.strerror or exc}")
            return False
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms ACK stalls
        self._card = EmvCard(self.profile, self.mode, self.remove_after)  # a fresh power-up
        self._link = VpcdLink()
        self.emit("inserted")
        return True

    def remove(self, why: str = "by the customer") -> None:
        if self.sock is None:
            return
        with contextlib.suppress(OSError):
            self.sock.close()
        self.sock = None
        log.info("card removed %s", why)
        self.emit("removed")

    def on_readable(self) -> None:
        """Serve what vpcd sent; a closed connection means the reader went away."""
        assert self.sock is not None
        try:
            data = self.sock.recv(4096)
            # vpcd writes the length and the APDU separately; ACK at once so Nagle on its
            # side does not hold the APDU back for our 40 ms delayed-ACK timer.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            data = b""
        if not data:
            self.remove("by the reader (connection closed)")
            return
        try:
            messages = self._link.feed(data)
        except FramingError as exc:
            self.remove(f"by the card: {exc}")
            return
        for message in messages:
            had_atr = self._card.atr_served
            try:
                reply = self._card.receive(message)
            except Disconnect as exc:
                self.remove(str(exc))
                return
            if reply is not None:
                self.sock.sendall(VpcdLink.frame(reply))
            if self._card.atr_served and not had_atr:
                self.emit("atr")


def serve(sock: CardSocket, control: bool, stdin_fd: int = 0) -> int:
    """Run until ``quit``/EOF (control mode) or until the card leaves the reader."""
    if not control and not sock.insert():
        return 1
    sel = selectors.DefaultSelector()
    if control:
        sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
        sock.emit("ready")
    pending = b""
    registered: socket.socket | None = None
    while True:
        if registered is not sock.sock:
            if registered is not None:
                sel.unregister(registered)
            if sock.sock is not None:
                sel.register(sock.sock, selectors.EVENT_READ, "card")
            registered = sock.sock
        if not control and sock.sock is None:
            return 0
        for key, _ in sel.select():
            if key.data == "card":
                sock.on_readable()
                continue
            chunk = os.read(stdin_fd, 1024)
            if not chunk:
                sock.remove("on exit")
                return 0
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                command = line.decode(errors="replace").strip()
                if command == "insert":
                    sock.insert()
                elif command == "remove":
                    sock.remove()
                elif command == "quit":
                    sock.remove("on exit")
                    return 0
                elif command:
                    sock.emit(f"error unknown command {command!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.devices.vcard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=35963, help="vpcd slot port (35963, 35964)")
    parser.add_argument("--pan")
    parser.add_argument("--expiry", help="YYMM")
    parser.add_argument("--name", default="")
    parser.add_argument("--aid", default="", help="default: Visa for 4..., else Mastercard")
    parser.add_argument("--service-code", default="201")
    parser.add_argument("--track2", default="", help="override, '=' separator")
    parser.add_argument("--seed", help="seed TOML to take the card with --pan from")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--remove-after", type=int, default=5, help="APDUs (removed_mid_read)")
    parser.add_argument("--control", action="store_true", help="insert/remove/quit on stdin")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="vcard %(levelname)s %(message)s")
    if not args.pan:
        parser.error("--pan is required")
    try:
        if args.seed:
            profile = load_seed_card(args.seed, args.pan)
        else:
            if not args.expiry:
                parser.error("--expiry is required without --seed")
            profile = CardProfile(
                args.pan, args.expiry, args.name, args.aid, args.service_code, args.track2
            )
    except (KeyError, ValueError, OSError) as exc:
        parser.error(str(exc))

    def emit(event: str) -> None:
        sys.stdout.write(event + "\n")
        sys.stdout.flush()

    card = CardSocket(profile, args.mode, args.remove_after, args.host, args.port, emit)
    return serve(card, args.control)


if __name__ == "__main__":
    raise SystemExit(main())
