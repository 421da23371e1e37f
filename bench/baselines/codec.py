"""Baseline: what pyiso8583 alone costs per ATM 0200 withdrawal request, encoded and decoded.

Measures: the plain library (pyiso8583 4.0.1 with its stock ``iso8583.specs.default_ascii``
spec, no project code) turning one realistic cash-withdrawal request into bytes and back.
The request carries the fields an ATM sends for a 0200: 2 3 4 7 11 12 13 14 22 32 35 37
41 42 43 49 52 53 62 64, with the PIN block (52), key serial number (53) and MAC (64) as
16 hexadecimal characters each, which is how the stock ASCII spec (and our host link)
carries them. Each operation copies the field dict (as a caller building a fresh request
would), encodes it and decodes the result.

Why: the host link and the host simulator both run every request through this codec, so
this is the floor of their CPU cost per message on this machine. Project benchmarks
divide their own per-request cost by ``us_per_op`` measured in the same run, which keeps
the comparison meaningful on a shared, noisy machine.

Method: the message is first checked to survive the round trip unchanged, then warmed
up. Each of ``--repeats`` blocks times ``--number`` back-to-back round trips with one
clock read at each end (no per-operation timer overhead); the headline ``us_per_op`` is
the median of the block means. A separate, bounded sampling pass (``--samples``) times
encode and decode of single operations for p50/p99 figures.

Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import iso8583
from iso8583.specs import default_ascii

SPEC = default_ascii

# A cash withdrawal of 60.00 (minor units) from the default account, chip read with PIN.
WITHDRAWAL: dict[str, str] = {
    "t": "0200",
    "2": "5413330089020011",
    "3": "010000",  # 01 = cash withdrawal, from/to default accounts
    "4": "000000006000",
    "7": "0314093127",  # transmission time, MMDDhhmmss
    "11": "004217",  # STAN
    "12": "093127",  # local time hhmmss
    "13": "0314",  # local date MMDD
    "14": "2907",  # card expiry YYMM
    "22": "051",  # ICC read, PIN captured
    "32": "00000047001",  # acquirer id
    "35": "5413330089020011=29072010000012345678",  # track 2 equivalent (37 chars)
    "37": "607309004217",  # retrieval reference
    "41": "ATM00017",  # terminal id
    "42": "ACQ000000000017",  # card acceptor id
    "43": "HARBOUR ROAD LOBBY     PORT ELLEN   SCGB",  # 23 + 13 + 2 + 2 = 40 chars
    "49": "826",  # GBP
    "52": "6F1D0A3B92C4E857",  # encrypted PIN block, hex
    "53": "FFFF00A1B2C3D4E5",  # key serial number, hex
    "62": "LOC=55.628100,-006.190400;TERM=LOBBY;APP=2.4.1;FACE=0;CARDLESS=0",
    "64": "9E04C77B15A2D3F0",  # MAC, hex
}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def round_trip(fields: dict[str, str]) -> dict[str, Any]:
    raw, _ = iso8583.encode(dict(fields), SPEC)
    decoded, _ = iso8583.decode(raw, SPEC)
    return decoded


def wire_size_after_check() -> int:
    """Bytes on the wire, after proving the message comes back exactly as sent."""
    raw, _ = iso8583.encode(dict(WITHDRAWAL), SPEC)
    decoded, _ = iso8583.decode(bytes(raw), SPEC)
    decoded.pop("p", None)
    if decoded != WITHDRAWAL:
        changed = sorted(k for k in WITHDRAWAL if decoded.get(k) != WITHDRAWAL[k])
        raise SystemExit(f"round trip altered fields {changed}")
    return len(raw)


def block_mean_us(number: int) -> float:
    """Mean microseconds per round trip over ``number`` untimed-inside round trips."""
    message = WITHDRAWAL
    started = time.perf_counter()
    for _ in range(number):
        round_trip(message)
    return (time.perf_counter() - started) / number * 1e6


def sampled_us(count: int) -> tuple[list[float], list[float], list[float]]:
    """Single-operation timings: (round trip, encode, decode), microseconds each."""
    clock = time.perf_counter_ns
    total, enc, dec = [], [], []
    for _ in range(count):
        t0 = clock()
        raw, _ = iso8583.encode(dict(WITHDRAWAL), SPEC)
        t1 = clock()
        iso8583.decode(raw, SPEC)
        t2 = clock()
        total.append((t2 - t0) / 1000)
        enc.append((t1 - t0) / 1000)
        dec.append((t2 - t1) / 1000)
    return total, enc, dec


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description="pyiso8583 encode+decode of an ATM 0200 withdrawal (baseline).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks (1..50)")
    parser.add_argument(
        "--number", type=int, default=20_000, help="round trips per block (1..1,000,000)"
    )
    parser.add_argument("--warmup", type=int, default=1000, help="untimed round trips first")
    parser.add_argument(
        "--samples", type=int, default=5000, help="single timed round trips for p50/p99"
    )
    args = parser.parse_args()
    if not 1 <= args.repeats <= 50 or not 1 <= args.number <= 1_000_000:
        parser.error("--repeats must be 1..50 and --number 1..1,000,000")
    if not 0 <= args.warmup <= 1_000_000 or not 1 <= args.samples <= 1_000_000:
        parser.error("--warmup must be 0..1,000,000 and --samples 1..1,000,000")

    size = wire_size_after_check()
    progress(f"codec: 0200 withdrawal, {len(WITHDRAWAL) - 1} fields, {size} bytes on the wire")
    for _ in range(args.warmup):
        round_trip(WITHDRAWAL)

    means = []
    for index in range(args.repeats):
        means.append(block_mean_us(args.number))
        progress(f"codec: block {index + 1}/{args.repeats}: {means[-1]:.2f} us per round trip")
    total, enc, dec = sampled_us(args.samples)

    us_per_op = statistics.median(means)
    result = {
        "name": "baseline_codec_pyiso8583_0200",
        "library": "pyiso8583",
        "spec": "iso8583.specs.default_ascii",
        "message_bytes": size,
        "fields": len(WITHDRAWAL) - 1,
        "repeats": args.repeats,
        "number": args.number,
        "us_per_op": round(us_per_op, 2),
        "ops_per_s": round(1e6 / us_per_op),
        "block_means_us": [round(m, 2) for m in means],
        "samples": args.samples,
        "p50_us": round(nearest_rank(total, 50), 2),
        "p99_us": round(nearest_rank(total, 99), 2),
        "encode_p50_us": round(nearest_rank(enc, 50), 2),
        "decode_p50_us": round(nearest_rank(dec, 50), 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
