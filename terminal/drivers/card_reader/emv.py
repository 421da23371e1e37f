"""EMV contact read logic with no I/O: a function of a ``transmit(apdu)`` callable.

Why no I/O: the same code then runs against pcscd (:mod:`.pcsc`), against a fake card in
a unit test, and against anything else that can move an APDU, and each failure can name
the step and the status word. The read is the magnetic-stripe-equivalent part of an EMV
transaction (Book 1 section 12, Book 3 section 10): choose the application (PSE directory
or a list of AIDs), SELECT it, GET PROCESSING OPTIONS, READ RECORD over the AFL, and take
PAN, expiry, track 2 equivalent, name and service code from the records. No cryptograms:
the host authorises on track 2 data and the PIN block.

T=0 transport rules are handled here because pcscd passes them through: ``61xx`` means
"fetch xx more bytes with GET RESPONSE", ``6Cxx`` means "resend with Le = xx".
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

from terminal.drivers.card_reader.base import CardData, CardUnreadable
from terminal.drivers.card_reader.tlv import Tlv, TlvError, encode, find, parse, parse_dol

log = logging.getLogger(__name__)

DEVICE = "card_reader"
Transmit = Callable[[bytes], tuple[bytes, int, int]]
PSE = b"1PAY.SYS.DDF01"
DEFAULT_AIDS: tuple[str, ...] = (
    "A0000000031010",  # Visa credit/debit
    "A0000000032010",  # Visa Electron
    "A0000000041010",  # Mastercard
    "A0000000043060",  # Maestro
    "A00000002501",  # American Express
    "A0000000651010",  # JCB
)
MAX_CHAINED = 32  # GET RESPONSE / resend rounds before we call the card broken

STATUS_WORDS: dict[int, str] = {
    0x9000: "success",
    0x6283: "selected file invalidated (application blocked)",
    0x6400: "execution error, memory unchanged",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "referenced data invalidated",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6A80: "incorrect data field",
    0x6A81: "function not supported (card blocked)",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A86: "incorrect P1 P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1 P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def describe_sw(sw1: int, sw2: int) -> str:
    """``6A82 file or application not found``: the code and what it means."""
    sw = sw1 << 8 | sw2
    if sw in STATUS_WORDS:
        meaning = STATUS_WORDS[sw]
    elif sw1 == 0x61:
        meaning = f"{sw2} more bytes available"
    elif sw1 == 0x6C:
        meaning = f"wrong Le, exact length is {sw2}"
    elif sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        meaning = f"verification failed, {sw2 & 0x0F} tries left"
    elif sw1 in (0x62, 0x63):
        meaning = "warning"
    elif sw1 in (0x64, 0x65, 0x66):
        meaning = "execution error"
    else:
        meaning = "unknown status"
    return f"{sw:04X} {meaning}"


def command(
    cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> bytes:
    """A short APDU, case 1 to 4 (ISO 7816-4 section 5.1)."""
    apdu = bytes([cla, ins, p1, p2])
    if data:
        apdu += bytes([len(data)]) + data
    if le is not None:
        apdu += bytes([le & 0xFF])
    return apdu


def with_le(apdu: bytes, le: int) -> bytes:
    """The same command with Le replaced (or added), for a ``6Cxx`` resend."""
    has_le = len(apdu) == 5 or (len(apdu) > 5 and len(apdu) == 6 + apdu[4])
    return (apdu[:-1] if has_le else apdu) + bytes([le & 0xFF])


def select(name: bytes) -> bytes:
    return command(0x00, 0xA4, 0x04, 0x00, name, le=0)


def read_record(sfi: int, record: int) -> bytes:
    return command(0x00, 0xB2, record, (sfi << 3) | 0x04, le=0)


def pdol_data(pdol: bytes, values: Mapping[int, bytes] | None = None) -> bytes:
    """Fill a PDOL: known values cut or zero-padded to length, everything else zeros."""
    out = b""
    for tag, length in parse_dol(pdol):
        value = (values or {}).get(tag, b"")[:length]
        out += value + bytes(length - len(value))
    return out


@dataclasses.dataclass(frozen=True)
class Application:
    aid: bytes
    label: str = ""
    priority: int = 0  # 1 highest, 0 none (EMV tag 87, low nibble)


@dataclasses.dataclass(frozen=True, repr=False)
class EmvResult:
    card: CardData
    aid: str
    label: str
    selected_by: str  # "PSE" or "AID list"

    def __repr__(self) -> str:
        return f"EmvResult(card={self.card!r}, aid={self.aid!r}, by={self.selected_by!r})"


class EmvReader:
    """One read of one card through ``transmit``; ``on_step`` learns what is in flight."""

    def __init__(
        self,
        transmit: Transmit,
        aids: Sequence[str] = DEFAULT_AIDS,
        on_step: Callable[[str], None] | None = None,
        pdol_values: Mapping[int, bytes] | None = None,
    ) -> None:
        self._transmit = transmit
        self._aids = tuple(bytes.fromhex(a) for a in aids)
        self._on_step = on_step
        self._pdol_values = pdol_values

    def read(self) -> EmvResult:
        apps, how = self._applications()
        app, fci = self._select_application(apps, how)
        pdol = find(fci, 0x9F38)
        label_tlv = find(fci, 0x50)
        label = app.label or (label_tlv.value.decode("ascii", "replace") if label_tlv else "")
        afl = self._processing_options(pdol.value if pdol else b"")
        card = card_from_records(self._read_records(afl))
        return EmvResult(card, app.aid.hex().upper(), label, how)

    # -- transport ---------------------------------------------------------------------------

    def exchange(self, step: str, apdu: bytes) -> tuple[bytes, int]:
        """Send ``apdu``, following 61xx/6Cxx; return all data and the final status word."""
        if self._on_step is not None:
            self._on_step(step)
        chunks: list[bytes] = []
        data, sw1, sw2 = self._transmit(apdu)
        for _ in range(MAX_CHAINED):
            if sw1 == 0x6C:
                log.debug("%s: %s, resending", step, describe_sw(sw1, sw2))
                apdu = with_le(apdu, sw2)
                data, sw1, sw2 = self._transmit(apdu)
            elif sw1 == 0x61:
                chunks.append(data)
                data, sw1, sw2 = self._transmit(command(0x00, 0xC0, 0x00, 0x00, le=sw2))
            else:
                break
        else:
            raise CardUnreadable(DEVICE, f"{step}: card keeps answering {describe_sw(sw1, sw2)}")
        chunks.append(data)
        log.debug("%s: %s", step, describe_sw(sw1, sw2))
        return b"".join(chunks), sw1 << 8 | sw2

    def _ok(self, step: str, apdu: bytes) -> list[Tlv]:
        data, sw = self.exchange(step, apdu)
        if sw != 0x9000:
            raise CardUnreadable(DEVICE, f"{step} failed: SW {describe_sw(sw >> 8, sw & 0xFF)}")
        return _parse(step, data)

    # -- steps -------------------------------------------------------------------------------

    def _applications(self) -> tuple[list[Application], str]:
        data, sw = self.exchange("SELECT PSE", select(PSE))
        if sw == 0x6A81:
            raise CardUnreadable(DEVICE, f"SELECT PSE: card blocked ({describe_sw(0x6A, 0x81)})")
        if sw == 0x9000:
            sfi = find(_parse("SELECT PSE", data), 0x88)
            if sfi is not None and len(sfi.value) == 1:
                apps = [a for a in self._directory(sfi.value[0]) if self._supported(a.aid)]
                if apps:
                    return sorted(apps, key=lambda a: (a.priority == 0, a.priority)), "PSE"
        return [Application(aid) for aid in self._aids], "AID list"

    def _directory(self, sfi: int) -> list[Application]:
        apps: list[Application] = []
        for record in range(1, 17):
            step = f"READ RECORD PSE SFI {sfi} record {record}"
            data, sw = self.exchange(step, read_record(sfi, record))
            if sw != 0x9000:  # 6A83 ends the directory; anything else: use the AID list
                log.debug("%s ended the directory: %s", step, describe_sw(sw >> 8, sw & 0xFF))
                break
            for obj in _parse(step, data):
                for entry in obj.children or ():
                    aid = entry.find(0x4F)
                    if entry.tag != 0x61 or aid is None:
                        continue
                    label = entry.find(0x50)
                    prio = entry.find(0x87)
                    apps.append(
                        Application(
                            aid.value,
                            label.value.decode("ascii", "replace") if label else "",
                            prio.value[0] & 0x0F if prio and prio.value else 0,
                        )
                    )
        return apps

    def _supported(self, aid: bytes) -> bool:
        return any(aid.startswith(known) for known in self._aids)

    def _select_application(
        self, apps: list[Application], how: str
    ) -> tuple[Application, list[Tlv]]:
        failures: list[str] = []
        for app in apps:
            step = f"SELECT AID {app.aid.hex().upper()}"
            data, sw = self.exchange(step, select(app.aid))
            if sw == 0x9000:
                return app, _parse(step, data)
            failures.append(f"{step}: {describe_sw(sw >> 8, sw & 0xFF)}")
        raise CardUnreadable(
            DEVICE, f"no supported application on the card ({how}): " + "; ".join(failures)
        )

    def _processing_options(self, pdol: bytes) -> bytes:
        step = "GET PROCESSING OPTIONS"
        try:
            filled = pdol_data(pdol, self._pdol_values)
        except TlvError as exc:
            raise CardUnreadable(DEVICE, f"malformed PDOL in the FCI: {exc}") from exc
        reply = self._ok(step, command(0x80, 0xA8, 0x00, 0x00, encode(0x83, filled), le=0))
        if reply and reply[0].tag == 0x80 and len(reply[0].value) >= 2:  # format 1
            return reply[0].value[2:]
        afl = find(reply, 0x94)
        if not reply or reply[0].tag != 0x77 or afl is None:
            raise CardUnreadable(DEVICE, f"{step}: response has no AFL")
        return afl.value

    def _read_records(self, afl: bytes) -> list[Tlv]:
        if not afl or len(afl) % 4:
            raise CardUnreadable(DEVICE, f"bad AFL of {len(afl)} bytes (not a multiple of 4)")
        found: list[Tlv] = []
        for i in range(0, len(afl), 4):
            sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
            if not 1 <= sfi <= 30 or first == 0 or last < first:
                raise CardUnreadable(DEVICE, f"bad AFL entry {afl[i : i + 4].hex().upper()}")
            for record in range(first, last + 1):
                step = f"READ RECORD SFI {sfi} record {record}"
                objects = self._ok(step, read_record(sfi, record))
                if sfi <= 10 and (len(objects) != 1 or objects[0].tag != 0x70):
                    raise CardUnreadable(DEVICE, f"{step}: record is not a 70 template")
                found.extend(objects)
        return found


def _parse(step: str, data: bytes) -> list[Tlv]:
    try:
        return parse(data)
    except TlvError as exc:
        raise CardUnreadable(DEVICE, f"malformed TLV in {step}: {exc}") from exc


def _digits(value: bytes, what: str) -> str:
    text = value.hex().upper().rstrip("F")
    if not text.isdigit():
        raise CardUnreadable(DEVICE, f"{what} is not BCD digits")
    return text


def card_from_records(records: Sequence[Tlv]) -> CardData:
    """PAN, expiry (YYMM), track 2 (``=`` separator), name and service code."""
    track2 = ""
    t2_pan = t2_expiry = t2_service = ""
    t2 = find(records, 0x57)
    if t2 is not None:
        raw = t2.value.hex().upper().rstrip("F")
        pan_part, sep, rest = raw.partition("D")
        if not sep or not pan_part.isdigit() or not rest.isdigit() or len(rest) < 7:
            raise CardUnreadable(DEVICE, "track 2 equivalent (57) is malformed")
        track2 = f"{pan_part}={rest}"
        t2_pan, t2_expiry, t2_service = pan_part, rest[:4], rest[4:7]
    pan_tlv = find(records, 0x5A)
    pan = _digits(pan_tlv.value, "PAN (5A)") if pan_tlv is not None else t2_pan
    if not pan:
        raise CardUnreadable(DEVICE, "records hold neither a PAN (5A) nor track 2 (57)")
    if not 12 <= len(pan) <= 19:
        raise CardUnreadable(DEVICE, f"PAN has {len(pan)} digits")
    if t2_pan and t2_pan != pan:
        raise CardUnreadable(DEVICE, "PAN (5A) and track 2 (57) disagree")
    exp_tlv = find(records, 0x5F24)
    expiry = _digits(exp_tlv.value, "expiry (5F24)")[:4] if exp_tlv is not None else t2_expiry
    if len(expiry) != 4 or not 1 <= int(expiry[2:]) <= 12:
        raise CardUnreadable(DEVICE, "no valid expiry date (5F24 or track 2)")
    name_tlv = find(records, 0x5F20)
    name = name_tlv.value.decode("ascii", "replace").strip() if name_tlv is not None else ""
    sc_tlv = find(records, 0x5F30)
    service = (
        _digits(sc_tlv.value, "service code (5F30)")[-3:] if sc_tlv is not None else t2_service
    )
    return CardData(pan=pan, expiry=expiry, track2=track2, name=name, service_code=service)
