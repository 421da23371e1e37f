"""An independent check of the wire format: Wireshark's ISO 8583 dissector must read what
our host link sends.

A real host runs as its own process (``atm host`` on a free port); ``tshark`` captures the
loopback traffic to that port while a :class:`~host_link.client.HostClient` sends the
terminal's own requests (built by :mod:`terminal.transactions`, PIN blocks from the demo
seed's PIN key). The capture is then decoded with
``tshark -d tcp.port==PORT,iso8583 -o iso8583.len_endian:Big endian`` and every message
must come out with the MTI, bitmap length and field values we sent and received.

This test never skips: without ``tshark`` on PATH it fails (CI installs Debian's tshark).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host_link.authentication import encode_signed
from host_link.codec import Message, decode, encode
from host_link.framing import frame
from sim.host.seed import read_toml
from sim.scenarios.demo import DEMO_SEED, TERMINAL_ID, HostProcess, host_process
from sim.scenarios.link import TerminalLink
from terminal import transactions
from terminal.config import TerminalConfig
from terminal.drivers.card_reader.base import CardData

pytestmark = pytest.mark.tshark

READY_TIMEOUT = 15.0
PCAP_HEADER = 24  # classic pcap global header; anything beyond it is a captured packet
DECODE_PREFS = ["-o", "iso8583.len_endian:Big endian"]

# (request, response) pairs as the client saw them
Exchange = tuple[Message, Message]


def _tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail(
            "tshark is not on PATH: this test checks the wire format with Wireshark's ISO 8583 "
            "dissector and never skips. Install it (Debian: apt-get install tshark) and run as "
            "a user allowed to capture on 'lo'."
        )
    return path


def _probe(port: int) -> None:
    """Open and close a TCP connection to the host: packets for the capture filter."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def _stderr_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def _capture(tshark: str, port: int, pcap: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run tshark on ``lo`` for ``tcp port PORT`` writing ``pcap``; yields once it captures.

    Ready means tshark said "Capturing on" *and* the capture file holds a packet from
    probe connections to the port (the "Capturing on" line comes before packets are really
    captured, and dumpcap flushes about twice a second). Stopped with SIGINT, then waited
    for, so the file is complete.
    """
    stderr_path = pcap.with_suffix(".stderr")
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [tshark, "-i", "lo", "-f", f"tcp port {port}", "-F", "pcap", "-w", str(pcap), "-q"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while "Capturing on" not in _stderr_of(stderr_path):
            if proc.poll() is not None:
                pytest.fail(f"tshark exited ({proc.returncode}): {_stderr_of(stderr_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"tshark did not start capturing: {_stderr_of(stderr_path)}")
            time.sleep(0.05)
        _wait_for_first_packet(proc, pcap, port, deadline, stderr_path)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for_first_packet(
    proc: subprocess.Popen[bytes], pcap: Path, port: int, deadline: float, stderr_path: Path
) -> None:
    while not (pcap.exists() and pcap.stat().st_size > PCAP_HEADER):
        if proc.poll() is not None:
            pytest.fail(f"tshark exited ({proc.returncode}): {_stderr_of(stderr_path)}")
        if time.monotonic() > deadline:
            pytest.fail(f"tshark captured nothing on lo port {port}: {_stderr_of(stderr_path)}")
        _probe(port)
        time.sleep(0.1)


def _wait_for_bytes(pcap: Path, needle: bytes, timeout: float = 10.0) -> None:
    """Wait until ``needle`` (the last frame of our traffic) is written to the capture."""
    deadline = time.monotonic() + timeout
    while needle not in pcap.read_bytes():
        if time.monotonic() > deadline:
            pytest.fail("the last response never reached the capture file")
        time.sleep(0.1)


def _demo_card(name: str) -> tuple[CardData, str]:
    """A seed card and its clear PIN (test data: the seed is public)."""
    row = next(row for row in read_toml(DEMO_SEED)["cards"] if row["name"] == name)
    pan, expiry = row["pan"], row["expiry"]
    return CardData(pan=pan, expiry=expiry, track2=f"{pan}={expiry}201", name=name), row["pin"]


async def _drive(port: int) -> list[Exchange]:
    """The traffic: key exchange and sign-on, PIN checks, withdrawals, a full and a partial
    reversal, a decline, echo. Every message carries its MAC, as a terminal sends it."""
    config = TerminalConfig(terminal_id=TERMINAL_ID, location="Main Street branch")
    link = TerminalLink(DEMO_SEED, TERMINAL_ID, port)
    client = link.client
    assert client.authenticator is not None
    exchanges: list[Exchange] = []

    async def send(message: Message) -> Message:
        request = client.stamp(message)
        response = await client.request(request)
        # what went on the wire: the request with its MAC field filled in
        exchanges.append((decode(encode_signed(request, client.authenticator)), response))
        return request

    def block(pin: str, pan: str) -> bytes:
        return bytes.fromhex(link.pin_fields(pin, pan)["52"])

    alice, alice_pin = _demo_card("ALICE ARDEN")
    bob, bob_pin = _demo_card("BOB BRANDT")
    try:
        await send({"t": "0800", "70": "101"})  # key exchange under the TMK
        keys = dict(item.split("=", 1) for item in exchanges[-1][1]["63"].split(";"))
        link.pinpad.install_working_keys(keys["TPK"], keys["TAK"])
        await send({"t": "0800", "70": "001"})  # sign-on, MACed with the new TAK
        alice_block = block(alice_pin, alice.pan)
        await send(transactions.balance_inquiry(config, alice, alice_block))
        await send(transactions.balance_inquiry(config, bob, block("0000", bob.pan)))
        full = await send(transactions.withdrawal(config, alice, alice_block, 10_000))
        await send(transactions.reversal(config, full, dispensed=0))
        partial = await send(transactions.withdrawal(config, alice, alice_block, 5_000))
        await send(transactions.reversal(config, partial, dispensed=2_000))
        await send(transactions.withdrawal(config, bob, block(bob_pin, bob.pan), 10_000))
        await send({"t": "0800", "70": "301"})
    finally:
        await link.close()
    return exchanges


def _dissect(tshark: str, pcap: Path, port: int) -> list[dict[str, Any]]:
    """Every ISO 8583 PDU in the capture: its iso8583 fields plus the TCP ports."""
    run = subprocess.run(
        [
            tshark,
            "-r",
            str(pcap),
            "-d",
            f"tcp.port=={port},iso8583",
            *DECODE_PREFS,
            "-Y",
            "iso8583",
            "-T",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    pdus = []
    for packet in json.loads(run.stdout or "[]"):
        layers = packet["_source"]["layers"]
        assert "_ws.malformed" not in layers, f"dissector flagged a malformed packet: {layers}"
        found = layers["iso8583"]
        for pdu in found if isinstance(found, list) else [found]:
            assert "iso8583.MALFORMED" not in pdu, pdu
            pdu = dict(pdu)
            pdu["src"], pdu["dst"] = (
                int(layers["tcp"]["tcp.srcport"]),
                int(layers["tcp"]["tcp.dstport"]),
            )
            pdus.append(pdu)
    return pdus


def _fields(pdu: dict[str, Any]) -> dict[str, str]:
    """The dissected data elements, keyed like our messages: "t" and field numbers."""
    out = {"t": pdu["iso8583.mti"]}
    for key, value in pdu.items():
        if key.startswith("iso8583.bit") and key != "iso8583.bit1":
            out[key.removeprefix("iso8583.bit")] = value
    return out


def _only(pdus: list[dict[str, Any]], mti: str, stan: str) -> dict[str, Any]:
    found = [p for p in pdus if p["iso8583.mti"] == mti and p.get("iso8583.bit11") == stan]
    assert len(found) == 1, f"{mti} STAN {stan}: found {len(found)} in the capture"
    return found[0]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[HostProcess]:
    # plain TCP on purpose: the dissector must read the ISO 8583 bytes on the wire (over the
    # TLS the host serves by default it would see only records)
    with host_process(
        tmp_path / "host.db", DEMO_SEED, tmp_path / "host.log", demo=True, pki=None
    ) as handle:
        yield handle


def test_wireshark_dissector_reads_our_messages(tmp_path: Path, host: HostProcess) -> None:
    tshark = _tshark()
    pcap = tmp_path / "host-link.pcap"
    with _capture(tshark, host.port, pcap) as proc:
        exchanges = asyncio.run(_drive(host.port))
        _wait_for_bytes(pcap, frame(encode(exchanges[-1][1])))
    assert proc.returncode == 0, _stderr_of(pcap.with_suffix(".stderr"))

    # what the host answered, as the client decoded it (the scenario did what we meant)
    codes = [(req["t"], resp["t"], resp["39"]) for req, resp in exchanges]
    assert codes == [
        ("0800", "0810", "00"),
        ("0800", "0810", "00"),
        ("0100", "0110", "00"),
        ("0100", "0110", "55"),
        ("0200", "0210", "00"),
        ("0400", "0410", "00"),
        ("0200", "0210", "00"),
        ("0420", "0430", "00"),
        ("0200", "0210", "51"),
        ("0800", "0810", "00"),
    ]

    pdus = _dissect(tshark, pcap, host.port)
    assert {p["iso8583.mti"] for p in pdus} == {
        "0100",
        "0110",
        "0200",
        "0210",
        "0400",
        "0410",
        "0420",
        "0430",
        "0800",
        "0810",
    }
    assert len(pdus) == 2 * len(exchanges), "every message once, no strays"

    for request, response in exchanges:
        stan = request["11"]
        sent = _only(pdus, request["t"], stan)
        answer = _only(pdus, response["t"], stan)
        # direction: requests go to the host's port, responses come from it
        assert sent["dst"] == host.port and answer["src"] == host.port
        # the 2-byte big-endian length prefix is read as the message length
        assert int(sent["iso8583.len"]) == len(encode(request))
        assert int(answer["iso8583.len"]) == len(encode(response))
        # every data element, as text, exactly as we sent and received it
        assert _fields(sent) == {k: str(v) for k, v in request.items()}
        assert _fields(answer) == response
        # PAN-independent link fields, spelled out
        assert sent["iso8583.bit41"] == answer["iso8583.bit41"] == TERMINAL_ID
        assert answer["iso8583.bit39"] == response["39"]
        assert answer["iso8583.bit7"] == request["7"]
        # fields 65..128 present means a secondary bitmap, and only then
        has_secondary = any(int(k) > 64 for k in request if k.isdigit())
        assert ("iso8583.map2" in sent) == has_secondary

    by_mti = {req["t"]: (req, resp) for req, resp in exchanges}
    # binary PIN block as 16 hex characters; card data never comes back
    first_0200 = _only(pdus, "0200", exchanges[4][0]["11"])
    assert first_0200["iso8583.bit52"] == exchanges[4][0]["52"]
    assert len(first_0200["iso8583.bit52"]) == 16
    card_data = ("iso8583.bit2", "iso8583.bit35", "iso8583.bit52")
    assert not any(k in p for p in pdus if p["src"] == host.port for k in card_data)
    # field 54 balances and the approval's RRN / auth code on the 0210
    approved = _only(pdus, "0210", exchanges[4][1]["11"])
    assert approved["iso8583.bit39"] == "00"
    assert len(approved["iso8583.bit54"]) % 20 == 0 and approved["iso8583.bit54"]
    assert len(approved["iso8583.bit37"]) == 12 and len(approved["iso8583.bit38"]) == 6
    # reversals carry the original's data elements (90), the partial one field 95
    reversal, _ = by_mti["0400"]
    assert _only(pdus, "0400", reversal["11"])["iso8583.bit90"] == (
        f"0200{exchanges[4][0]['11']}{exchanges[4][0]['7']}" + "100001".rjust(11, "0") + "0" * 11
    )
    advice, _ = by_mti["0420"]
    assert _only(pdus, "0420", advice["11"])["iso8583.bit95"] == "000000002000" + "0" * 30
    # network management: field 70 in the secondary bitmap
    echo = exchanges[-1][0]
    assert _only(pdus, "0810", echo["11"])["iso8583.bit70"] == "301"
    # every message carries a MAC as its last field: 64, or 128 with a secondary bitmap
    for request, response in exchanges:
        for message in (request, response):
            assert (
                "128" if any(int(k) > 64 for k in message if k.isdigit() and k != "128") else "64"
            ) in message
