"""A duress session looks like a normal one on the wire, not only on the screen.

Real TCP through a recording proxy between the terminal and an in-process host: every
byte both ways is captured and cut into frames per session. Duress and normal answers
must be the same size, field 63 sealed and of constant length in every 0110/0210, no
evidence request or reference in clear, and the 0620 snapshot uploads of constant part
size and present in normal sessions too (decoys the host samples and drops). Then the
unit checks of the data key: labelled, never the MAC key, the same at both ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import struct
from collections import Counter
from pathlib import Path

import pytest

from atm_common.clock import ManualClock
from atm_common.crypto import dukpt
from atm_common.crypto.data import Direction, derive_tdes_data_key, seal, unseal
from host_link.codec import Message, decode
from host_link.evidence import PART_CHARS, RESPONSE_CHARS, parse_request, request_plaintext
from sim.host.app import build_host
from sim.host.outbox import entries
from sim.scenarios.demo import DEMO_SEED, demo_terminal, seed_cards, sim_customer
from sim.scenarios.scripts import WITHDRAW, Scenario, apply
from terminal.drivers.pinpad.sim import CANCEL, Keys, Pin
from terminal.security.pinpad_keys import PinPadKeys

from ..host.helpers import DUKPT_TERMINAL, Terminal, open_host

ERIN = "ERIN EBERT"
NORMAL_PIN, DURESS_PIN = "2580", "0852"
SESSIONS = 6  # of each kind, interleaved


class Recorder:
    """A TCP proxy that keeps every byte: ``up`` terminal -> host, ``down`` host -> terminal."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.up, self.down = bytearray(), bytearray()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host_reader, host_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, into: bytearray
        ) -> None:
            try:
                while data := await src.read(65536):
                    into += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            pipe(reader, host_writer, self.up), pipe(host_reader, writer, self.down)
        )


def frames(stream: bytes) -> list[bytes]:
    out, at = [], 0
    while at + 2 <= len(stream):
        (length,) = struct.unpack(">H", stream[at : at + 2])
        out.append(stream[at + 2 : at + 2 + length])
        at += 2 + length
    return out


@dataclasses.dataclass
class Session:
    kind: str
    decoy: bool  # the host sampled this normal session
    up: list[bytes]
    down: list[bytes]

    def of(self, mti: str, direction: str = "down") -> list[tuple[bytes, Message]]:
        raw = self.down if direction == "down" else self.up
        return [(f, m) for f in raw if (m := decode(f))["t"] == mti]


class Decide:
    """The host's sampling, made deterministic: every other normal 0110 is a decoy."""

    def __init__(self) -> None:
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return 0.0 if self.calls % 2 else 0.99


@dataclasses.dataclass
class Capture:
    sessions: list[Session]
    queued: list[dict[str, object]]
    parts_refs: set[str]
    decoy_refs: set[str]
    alarm_refs: set[str]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    tmp_path = tmp_path_factory.mktemp("wire")

    async def main() -> Capture:
        clock = ManualClock(dt.datetime.now(dt.UTC))
        host = build_host(tmp_path / "host.db", DEMO_SEED, port=0, clock=clock, demo=True, pki=None)
        decide = Decide()
        host.authoriser._random = decide  # type: ignore[assignment]
        port = await host.start()
        proxy = Recorder(port)
        terminal = demo_terminal(tmp_path, await proxy.start(), DEMO_SEED, clock, tls=None)
        assert terminal.start() and await terminal.ensure_signed_on()
        customer = sim_customer(terminal)
        card, _ = seed_cards(DEMO_SEED)[ERIN]
        sessions = []
        try:
            for i in range(2 * SESSIONS):
                kind = ("normal", "duress")[i % 2]
                pin = NORMAL_PIN if kind == "normal" else DURESS_PIN
                up, down, calls = len(proxy.up), len(proxy.down), decide.calls
                apply(Scenario(kind, ERIN, [Pin(pin), WITHDRAW, Keys("20")], ""), customer, card)
                result = await terminal.serve_one()
                assert result is not None and result.outcome == "dispensed"
                await asyncio.sleep(0.05)  # the last answer through the proxy
                decoy = kind == "normal" and decide.calls > calls and decide.calls % 2 == 1
                sessions.append(
                    Session(kind, decoy, frames(proxy.up[up:]), frames(proxy.down[down:]))
                )
                clock.advance(86_400)  # a fresh daily limit for each session
            # a wrong PIN: a declined 0110 carries the same field 63
            up, down = len(proxy.up), len(proxy.down)
            apply(Scenario("declined", ERIN, [Pin("1111"), CANCEL], ""), customer, card)
            assert await terminal.serve_one() is not None
            await asyncio.sleep(0.05)
            declined = Session("declined", False, frames(proxy.up[up:]), frames(proxy.down[down:]))
            assert [m["39"] for _, m in declined.of("0110")] == ["55"]
            sessions.append(declined)
        finally:
            await terminal.close()
            await proxy.stop()
            await host.stop()
        conn = host.authoriser.conn
        queued = [e.payload for e in entries(conn)]
        parts_refs = {r for (r,) in conn.execute("SELECT DISTINCT ref FROM evidence_parts")}
        decoys = {r for (r,) in conn.execute("SELECT ref FROM evidence_decoys")}
        alarms = {r for (r,) in conn.execute("SELECT evidence_ref FROM duress_alarms")}
        conn.close()
        return Capture(sessions, queued, parts_refs, decoys, alarms)

    return asyncio.run(main())


def _by_kind(capture: Capture, kind: str) -> list[Session]:
    return [s for s in capture.sessions if s.kind == kind]


@pytest.mark.parametrize("mti", ["0110", "0210"])
def test_answers_are_the_same_size_duress_or_not(capture: Capture, mti: str) -> None:
    lengths = {
        kind: Counter(len(f) for s in _by_kind(capture, kind) for f, _ in s.of(mti))
        for kind in ("normal", "duress")
    }
    assert sum(lengths["normal"].values()) == sum(lengths["duress"].values()) == SESSIONS
    assert set(lengths["normal"]) == set(lengths["duress"]) and len(lengths["normal"]) == 1


@pytest.mark.parametrize("mti", ["0110", "0210"])
def test_field_63_is_sealed_and_constant_in_every_answer(capture: Capture, mti: str) -> None:
    fields = [m.get("63") for s in capture.sessions for _, m in s.of(mti)]
    assert fields and all(f is not None and len(f) == RESPONSE_CHARS for f in fields)
    assert len(set(fields)) == len(fields)  # random nonces: no two alike


def test_no_evidence_request_or_reference_in_clear(capture: Capture) -> None:
    wire = b"".join(f for s in capture.sessions for f in (*s.up, *s.down))
    for token in (b"EV=", b"REF=", b"EVD=", b"evr-"):
        assert token not in wire, token
    for ref in capture.alarm_refs | capture.decoy_refs:
        assert ref.encode() not in wire


def test_snapshot_uploads_are_constant_and_not_only_under_duress(capture: Capture) -> None:
    uploads = {
        kind: [len(f) for s in _by_kind(capture, kind) for f, _ in s.of("0620", "up")]
        for kind in ("normal", "duress")
    }
    assert uploads["duress"] and uploads["normal"]  # decoys upload too
    assert len(set(uploads["normal"]) | set(uploads["duress"])) == 1
    fields = [m["63"] for s in capture.sessions for _, m in s.of("0620", "up")]
    assert {len(f) for f in fields} == {PART_CHARS}
    # the answers to them are alike too
    answers = {len(f) for s in capture.sessions for f, _ in s.of("0630")}
    assert len(answers) == 1 and all(
        m["39"] == "00" for s in capture.sessions for _, m in s.of("0630")
    )


def test_terminal_sends_snapshots_exactly_when_asked(capture: Capture) -> None:
    assert any(s.decoy for s in capture.sessions)  # the host asked some normal sessions
    for session in capture.sessions:
        asked = session.kind == "duress" or session.decoy
        assert bool(session.of("0620", "up")) == asked, session.kind


def test_host_files_duress_snapshots_and_drops_decoys(capture: Capture) -> None:
    snapshots = [p for p in capture.queued if "evidence" in p]
    assert len(snapshots) == 2 * SESSIONS  # two per duress incident, none from decoys
    assert capture.parts_refs <= capture.alarm_refs
    assert not capture.parts_refs & capture.decoy_refs
    # decoy references are kept a week (the sessions were a day apart)
    assert 0 < len(capture.decoy_refs) <= sum(s.decoy for s in capture.sessions)


# -- the data key -------------------------------------------------------------------------


def test_tdes_data_key_is_labelled_and_never_the_mac_key() -> None:
    tak = bytes(range(16))
    response = derive_tdes_data_key(tak, Direction.RESPONSE)
    advice = derive_tdes_data_key(tak, Direction.ADVICE)
    assert len(response) == 16 and len({response, advice, tak}) == 3
    sealed = seal(response, b"x" * 64)
    assert unseal(response, sealed) == b"x" * 64
    with pytest.raises(ValueError):
        unseal(advice, sealed)
    with pytest.raises(ValueError):
        unseal(response, sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_dukpt_data_keys_are_x9_24_3_data_usages() -> None:
    ik, ksn = bytes(16), dukpt.AesKsn(bytes(8), 1)
    keys = {
        usage: dukpt.aes_working_key(ik, ksn, usage)
        for usage in (
            dukpt.KeyUsage.MAC_BOTH,
            dukpt.KeyUsage.DATA_ENCRYPTION,
            dukpt.KeyUsage.DATA_DECRYPTION,
        )
    }
    assert len(set(keys.values())) == 3
    assert Direction.RESPONSE.dukpt_usage == dukpt.KeyUsage.DATA_DECRYPTION == 0x3001
    assert Direction.ADVICE.dukpt_usage == dukpt.KeyUsage.DATA_ENCRYPTION == 0x3000


def test_host_and_dukpt_pin_pad_agree(tmp_path: Path) -> None:
    clock = ManualClock(dt.datetime.now(dt.UTC))
    host = open_host(tmp_path / "host.db", clock)
    try:
        terminal = Terminal(clock, DUKPT_TERMINAL)
        pad: PinPadKeys = terminal.pad
        ksn = pad.next_ksn()
        message = {"41": DUKPT_TERMINAL, "53": ksn or ""}
        sealed = host.authoriser.key_store.encrypt_response_data(message, request_plaintext(2, "r"))
        asked = parse_request(pad.decrypt_response_data(sealed, ksn))
        assert asked is not None and (asked.count, asked.ref) == (2, "r")
        back = pad.encrypt_advice_data(b"part", ksn)
        assert host.authoriser.key_store.decrypt_advice_data(message, back) == b"part"
        with pytest.raises(ValueError):
            host.authoriser.key_store.decrypt_advice_data(message, sealed)  # other direction
    finally:
        host.conn.close()
