"""Abuse of the phone API and the cardless checks, against a real ``atm host --api-port 0``.

Each test starts its own host process (the demo bank, its own database and log) and plays
what the review did to it: flooding one phone with sessions and wrong SMS codes, telling
customers' numbers from others by the answer, reaching the API or the SMS inbox from
outside, a PNG that decodes to 432 MB, a 40 MB body, reading ids and codes from the log,
learning the reserved amount without the code, and reading face distances. Every test
failed on the code before this file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import re
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from host_link.cardless import cardless_pan, encode_field63
from host_link.codec import Message
from host_link.codes import Mti, ProcessingCode
from sim.data import FACES_DIR
from sim.scenarios.link import TerminalLink
from sim.services import read_listening
from tests.host.helpers import DEMO_SEED

pytestmark = pytest.mark.e2e

FRANK = "+4915100000006"  # enrolled face (obama.jpg), debit account 1000000006
ALICE = "+4915100000001"
UNKNOWN = "+4915199999999"
R = "/cardless/requests"
_CODE = re.compile(r"\b(\d{6})\b")


@dataclasses.dataclass
class HostProcess:
    process: subprocess.Popen[str]
    address: str
    iso_port: int
    api_url: str
    db: Path
    log: Path
    api: httpx.Client

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@contextlib.contextmanager
def atm_host(tmp_path: Path, *extra: str) -> Iterator[HostProcess]:
    """``atm host --api-port 0`` on the demo bank, logging at debug to a file of its own."""
    db, log = tmp_path / "host.db", tmp_path / "host.log"
    argv = [sys.executable, "-m", "sim", "--log-level", "debug", "host", "--demo", "--plain"]
    argv += ["--db", str(db), "--seed", str(DEMO_SEED), "--log", str(log)]
    argv += ["--port", "0", "--api-port", "0", *extra]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with (tmp_path / "stderr.txt").open("w+") as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        try:
            try:
                address, port = read_listening(proc, "host")
            except Exception:
                proc.kill()
                proc.wait()
                errors.seek(0)
                raise AssertionError(f"host did not start: {errors.read()}") from None
            assert proc.stdout is not None
            api_line = proc.stdout.readline().strip()
            assert api_line.startswith("api on http://"), api_line
            url = api_line.split()[-1]
            with httpx.Client(base_url=url, timeout=60, trust_env=False) as api:
                yield HostProcess(proc, address, port, url, db, log, api)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def inbox_code(host: HostProcess, phone: str) -> str:
    """The code in the newest SMS to ``phone`` (only a host with --sms-inbox shows it)."""
    messages = host.api.get(f"/phones/{phone}/messages").json()
    for message in reversed(messages):
        found = _CODE.search(message["text"])
        if found:
            return found.group(1)
    raise AssertionError(f"no SMS with a code for {phone}: {messages}")


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def photo(name: str) -> str:
    return base64.b64encode((FACES_DIR / name).read_bytes()).decode()


def verified_session(host: HostProcess, phone: str = FRANK) -> str:
    created = host.api.post(R, json={"phone": phone})
    assert created.status_code == 201, created.text
    request_id: str = created.json()["request_id"]
    ok = host.api.post(f"{R}/{request_id}/verification", json={"code": inbox_code(host, phone)})
    assert ok.status_code == 200, ok.text
    return request_id


def reserve_by_code(host: HostProcess, amount: int = 10_000) -> dict[str, Any]:
    """Frank's whole phone flow: request, SMS code, face, quote, confirm (code method)."""
    request_id = verified_session(host)
    face = {"consent": True, "image_base64": photo("obama2.jpg")}
    matched = host.api.post(f"{R}/{request_id}/face", json=face)
    assert matched.status_code == 200 and matched.json()["match"] is True, matched.text
    quote = host.api.post(
        f"{R}/{request_id}/quotes",
        json={"account": "1000000006", "amount": amount, "method": "code"},
    )
    assert quote.status_code == 201, quote.text
    confirmed = host.api.post(
        f"{R}/{request_id}/reservation", json={"quote_id": quote.json()["quote_id"]}
    )
    assert confirmed.status_code == 201, confirmed.text
    return {"request_id": request_id, "quote_id": quote.json()["quote_id"], **confirmed.json()}


# -- SMS codes: sessions per phone and per address, lockout, one answer for all numbers --


def test_a_session_flood_on_one_phone_is_throttled_and_its_guesses_locked(
    tmp_path: Path,
) -> None:
    with atm_host(tmp_path, "--sms-inbox") as host:
        # New sessions for one number: five, then the phone must wait (each one texts it).
        answers = [host.api.post(R, json={"phone": FRANK}) for _ in range(8)]
        assert [a.status_code for a in answers] == [201] * 5 + [429] * 3
        assert int(answers[5].headers["Retry-After"]) > 0
        assert len(host.api.get(f"/phones/{FRANK}/messages").json()) == 5  # no more texts

        # Another number from the same client is not held up by Frank's. Wrong codes over
        # its sessions: the tenth in a row locks the number, and from then on no code is
        # compared, not even the right one.
        sessions = [host.api.post(R, json={"phone": ALICE}) for _ in range(4)]
        assert [s.status_code for s in sessions] == [201] * 4
        ids = [s.json()["request_id"] for s in sessions]
        texts = host.api.get(f"/phones/{ALICE}/messages").json()
        codes = [m.group(1) for t in texts if (m := _CODE.search(t["text"]))]
        assert len(codes) == 4  # one per session, in order

        def guess(n: int, code: str) -> httpx.Response:
            return host.api.post(f"{R}/{ids[n]}/verification", json={"code": code})

        statuses = [guess(n, wrong(codes[n])).status_code for n in range(3) for _ in range(3)]
        assert statuses == [403] * 9  # three sessions closed, nine failures in a row
        tenth = guess(3, wrong(codes[3]))
        assert tenth.status_code == 423 and "locked" in tenth.json()["detail"]
        # This address has had its ten failures too (429 for a while); from another one,
        # the right code on the session still open meets the phone's lock.
        assert guess(3, codes[3]).status_code == 429
        elsewhere = httpx.HTTPTransport(local_address="127.0.0.5")
        with httpx.Client(base_url=host.api_url, transport=elsewhere, trust_env=False) as other:
            right = other.post(f"{R}/{ids[3]}/verification", json={"code": codes[3]})
            assert right.status_code == 423, right.text
            assert other.post(R, json={"phone": ALICE}).status_code == 423
        assert host.api.get(f"{R}/{ids[3]}").json()["status"] == "sent"  # not verified
        assert host.api.post(R, json={"phone": ALICE}).status_code == 423
        assert len(host.api.get(f"/phones/{ALICE}/messages").json()) == 4


def test_a_session_flood_from_one_address_is_throttled(tmp_path: Path) -> None:
    with atm_host(tmp_path) as host:
        numbers = [f"+49151777{n:05d}" for n in range(24)]  # nobody's: decoys count too
        codes = [host.api.post(R, json={"phone": n}).status_code for n in numbers]
        assert codes == [201] * 20 + [429] * 4


def test_known_and_unknown_numbers_get_one_answer(tmp_path: Path) -> None:
    with atm_host(tmp_path) as host:
        host.api.get("/openapi.json")  # connection and app warm
        answers: dict[str, list[httpx.Response]] = {FRANK: [], UNKNOWN: []}
        took: dict[str, list[float]] = {FRANK: [], UNKNOWN: []}
        for _ in range(5):
            for phone in (FRANK, UNKNOWN):
                start = time.perf_counter()
                answers[phone].append(host.api.post(R, json={"phone": phone}))
                took[phone].append(time.perf_counter() - start)

        def shape(response: httpx.Response) -> tuple[Any, ...]:
            body = response.json()
            assert re.fullmatch(r"[0-9a-f]{20}", body["request_id"])
            types = tuple(sorted((k, type(v).__name__) for k, v in body.items()))
            return response.status_code, types, body["status"], body["reservation_id"]

        assert {shape(a) for a in answers[FRANK]} == {shape(a) for a in answers[UNKNOWN]}
        assert answers[FRANK][0].status_code == 201
        known, unknown = statistics.median(took[FRANK]), statistics.median(took[UNKNOWN])
        assert max(known, unknown) < 3 * min(known, unknown) + 0.005, (took, known, unknown)

        # What follows is the same too: a wrong code, the session's status.
        k, u = answers[FRANK][-1].json()["request_id"], answers[UNKNOWN][-1].json()["request_id"]
        wrong_k = host.api.post(f"{R}/{k}/verification", json={"code": "123456"})
        wrong_u = host.api.post(f"{R}/{u}/verification", json={"code": "123456"})
        assert (wrong_k.status_code, wrong_k.json()) == (wrong_u.status_code, wrong_u.json())
        status_k, status_u = host.api.get(f"{R}/{k}").json(), host.api.get(f"{R}/{u}").json()
        assert {**status_k, "request_id": "", "expires_at": ""} == {
            **status_u,
            "request_id": "",
            "expires_at": "",
        }


# -- where the API listens and what it serves ----------------------------------------------


def test_the_phone_api_listens_on_loopback_wherever_the_iso_port_does(tmp_path: Path) -> None:
    # 127.0.0.2 stands for "all interfaces": the ISO port there, the phone API not.
    with atm_host(tmp_path, "--host", "127.0.0.2") as host:
        assert host.address == "127.0.0.2"
        assert host.api_url.startswith("http://127.0.0.1:")


def test_the_sms_inbox_is_off_unless_asked_for(tmp_path: Path) -> None:
    with atm_host(tmp_path) as host:
        assert host.api.post(R, json={"phone": FRANK}).status_code == 201
        assert host.api.get(f"/phones/{FRANK}/messages").status_code == 404
        assert "/phones/{phone}/messages" not in host.api.get("/openapi.json").json()["paths"]


# -- memory: pixels and bodies are refused before they are decoded or read whole -----------


def blank_png(width: int, height: int) -> bytes:
    """A grey-scale PNG of zeros: tiny on disk, ``width x height x 3`` bytes decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_a_png_of_huge_dimensions_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    png = blank_png(12_000, 12_000)
    assert len(png) < 200_000  # ~140 KB that would decode to 432 MB
    with atm_host(tmp_path, "--sms-inbox") as host:
        request_id = verified_session(host)
        before = memory_kb(host.pid, "VmRSS")
        peak = [before]
        try:  # reset the peak (VmHWM) to now; else watch the RSS while the request runs
            Path(f"/proc/{host.pid}/clear_refs").write_text("5")
            watch = None
        except OSError:
            done = threading.Event()

            def poll() -> None:
                while not done.is_set():
                    peak.append(memory_kb(host.pid, "VmRSS"))
                    time.sleep(0.005)

            watch = threading.Thread(target=poll)
            watch.start()
        body = {"consent": True, "image_base64": base64.b64encode(png).decode()}
        answer = host.api.post(f"{R}/{request_id}/face", json=body)
        if watch is None:
            peak.append(memory_kb(host.pid, "VmHWM"))
        else:
            done.set()
            watch.join()
        grew_mb = (max(peak) - before) / 1024
        assert grew_mb < 64, f"the host grew {grew_mb:.0f} MB for a refused photo"
        assert answer.status_code == 422, answer.text
        assert "12000 x 12000" in answer.json()["detail"]
        # nothing counted: the session still takes a photo
        assert host.api.get(f"{R}/{request_id}").json()["status"] == "verified"


def test_a_40_mb_body_is_refused_with_413(tmp_path: Path) -> None:
    big = b'{"phone": "' + b"1" * 40_000_000 + b'"}'
    with atm_host(tmp_path) as host:
        declared = host.api.post(R, content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413, declared.text[:200]

        def chunks() -> Iterator[bytes]:  # no Content-Length: read only up to the limit
            for start in range(0, len(big), 1 << 20):
                yield big[start : start + (1 << 20)]

        chunked = host.api.post(R, content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413, chunked.text[:200]
        # the connection and the host carry on
        assert host.api.post(R, json={"phone": FRANK}).status_code == 201


# -- logs ----------------------------------------------------------------------------------


def test_no_bearer_id_or_code_reaches_the_log(tmp_path: Path) -> None:
    with atm_host(tmp_path, "--sms-inbox") as host:
        reservation = reserve_by_code(host)
        sms_codes = [
            found.group(1)
            for m in host.api.get(f"/phones/{FRANK}/messages").json()
            if (found := _CODE.search(m["text"]))
        ]
        rid = reservation["reservation_id"]
        assert host.api.get(f"/cardless/reservations/{rid}").status_code == 200
        replay = host.api.post(
            f"{R}/{reservation['request_id']}/reservation",
            json={"quote_id": reservation["quote_id"]},
        )
        assert replay.status_code == 409  # its refusal names the reservation: logged
        assert host.api.delete(f"/cardless/reservations/{rid}").status_code == 200
        time.sleep(1.0)  # the outbox worker delivers (and logs) the texts
    text = host.log_text()
    secrets = {
        "request id": reservation["request_id"],
        "reservation id": rid,
        "quote id": reservation["quote_id"],
        "reservation code": reservation["code"],
    } | {f"SMS code {n}": code for n, code in enumerate(sms_codes)}
    for what, secret in secrets.items():
        assert not re.search(rf"(?<![0-9a-f]){secret}(?![0-9a-f])", text), f"{what} is in the log"
    assert "cardless reserved: id#" in text  # the steps are logged, by fingerprint


# -- the checks: credentials before answers, no distances ---------------------------------


Ask = tuple[str, int | None, str]  # code, amount (None: a 0100), currency


async def atm_asks(link: TerminalLink, asks: list[Ask]) -> list[str]:
    """A cardless request from the demo ATM per ask; the response codes (and the approved
    amount)."""
    answers = []
    for code, amount, currency in asks:
        request: Message = {
            "32": "00000000001",
            "49": currency,
            "63": encode_field63(FRANK, "code"),
            **link.pin_fields(code, cardless_pan(FRANK)),
        }
        if amount is None:
            request |= {"t": Mti.AUTH_REQUEST, "3": ProcessingCode.CARDLESS_INQUIRY}
        else:
            request |= {
                "t": Mti.FINANCIAL_REQUEST,
                "3": ProcessingCode.CARDLESS_WITHDRAWAL,
                "4": f"{amount:012d}",
            }
        response = await link.request(request)
        approved = response["39"] == "00" and "4" in response
        answers.append(response["39"] + (f":{int(response['4'])}" if approved else ""))
    return answers


def test_the_amount_and_currency_are_answered_only_after_the_code(tmp_path: Path) -> None:
    with atm_host(tmp_path, "--sms-inbox") as host:
        reservation = reserve_by_code(host, amount=10_000)
        code, bad = str(reservation["code"]), wrong(str(reservation["code"]))
        rid = reservation["reservation_id"]

        def attempts() -> int:
            return int(host.api.get(f"/cardless/reservations/{rid}").json()["attempts"])

        async def atm() -> None:
            link = TerminalLink(DEMO_SEED, "ATM00001", host.iso_port)  # real keys and MACs
            try:
                await link.sign_on()
                # A wrong code with a wrong amount or currency: the code's answer, counted.
                asks: list[Ask] = [(bad, 20_000, "840"), (bad, None, "978")]
                assert await atm_asks(link, asks) == ["55", "55"]
                assert attempts() == 2
                # The right code: only now are the amount and currency told wrong.
                asks = [(code, 20_000, "840"), (code, None, "978"), (code, 10_000, "840")]
                assert await atm_asks(link, asks) == ["13", "13", "00:10000"]
                assert attempts() == 2
            finally:
                await link.close()

        asyncio.run(atm())


def test_the_face_answer_is_match_or_no_match(tmp_path: Path) -> None:
    with atm_host(tmp_path, "--sms-inbox") as host:
        request_id = verified_session(host)
        url = f"{R}/{request_id}/face"
        impostor = host.api.post(url, json={"consent": True, "image_base64": photo("biden.jpg")})
        genuine = host.api.post(url, json={"consent": True, "image_base64": photo("obama2.jpg")})
        assert impostor.status_code == genuine.status_code == 200
        assert impostor.json() == {"match": False, "attempts_left": 2, "status": "verified"}
        assert genuine.json() == {"match": True, "attempts_left": 2, "status": "identified"}
        schema = host.api.get("/openapi.json").json()["components"]["schemas"]["FaceOut"]
        assert set(schema["properties"]) == {"match", "attempts_left", "status"}
