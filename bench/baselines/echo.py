"""Baseline: the loopback round-trip limit of a length-prefixed asyncio TCP link.

Measures: an asyncio streams echo server, started by this script as a separate Python
process, answers frames shaped like the host link's (a 2-byte big-endian length, then
``--size`` body bytes) by sending each one straight back. This process runs N asyncio
clients on one event loop, each with its own connection and one request outstanding:
write + drain, then read the 2-byte length and exactly that many bytes, and check the
echo matches. No project code is involved.

Why: every terminal-to-host request in the project crosses the same kind of link, so
this is the floor for a request's latency and the ceiling for requests per second with
N connections on this machine. Project benchmarks divide their own figures by this
one's, measured in the same run, at the same N.

Method: for each N in ``--clients``, all N clients run for ``--warmup`` seconds
untimed, then every request started during the next ``--duration`` seconds is counted
and timed (each client also stops after ``--max-requests``). Reported per N, under
``results[str(N)]``: requests, requests/s, p50/p99 round trip in microseconds.

Safety: only 127.0.0.1 is used (no option changes that); the server quits when this
process closes its stdin or after a hard time limit, whichever comes first, and is
killed if it does not. Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Any

LOOPBACK = "127.0.0.1"
SERVE_FLAG = "--serve-seconds"  # internal: run as the echo server for at most N seconds


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the server process -----------------------------------------------------------------


async def echo_frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            header = await reader.readexactly(2)
            body = await reader.readexactly(int.from_bytes(header, "big"))
            writer.write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(limit_s: float) -> None:
    loop = asyncio.get_running_loop()
    parent_gone = asyncio.Event()

    def watch_stdin() -> None:  # returns at EOF: the parent closed the pipe or exited
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(parent_gone.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server = await asyncio.start_server(echo_frames, LOOPBACK, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        try:
            await asyncio.wait_for(parent_gone.wait(), timeout=limit_s)
        except TimeoutError:
            progress("echo server: hard time limit reached, stopping")


# -- the client side --------------------------------------------------------------------


class Level:
    """Counters for one N: latencies of counted requests and the last completion time."""

    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.last_done = 0.0
        self.mismatches = 0


async def client(
    port: int, body: bytes, count_from: float, stop_at: float, max_requests: int, level: Level
) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    frame = len(body).to_bytes(2, "big") + body
    clock = time.perf_counter
    try:
        for _ in range(max_requests):
            sent = clock()
            if sent >= stop_at:
                break
            writer.write(frame)
            await writer.drain()
            header = await reader.readexactly(2)
            echoed = await reader.readexactly(int.from_bytes(header, "big"))
            done = clock()
            if echoed != body:
                level.mismatches += 1
            if sent >= count_from:
                level.latencies_us.append((done - sent) * 1e6)
                level.last_done = max(level.last_done, done)
    finally:
        writer.close()
        await writer.wait_closed()


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(port: int, n: int, args: argparse.Namespace) -> dict[str, Any]:
    body = bytes((7 * i + 3) % 256 for i in range(args.size))
    level = Level()
    # Connections are opened inside each client; the clock starts once the task runs.
    count_from = time.perf_counter() + args.warmup
    stop_at = count_from + args.duration
    await asyncio.gather(
        *(client(port, body, count_from, stop_at, args.max_requests, level) for _ in range(n))
    )
    if level.mismatches:
        raise SystemExit(f"N={n}: {level.mismatches} echoes differed from what was sent")
    if not level.latencies_us:
        raise SystemExit(f"N={n}: no request fell in the timed window (raise --max-requests)")
    elapsed = level.last_done - count_from
    return {
        "requests": len(level.latencies_us),
        "seconds": round(elapsed, 3),
        "rps": round(len(level.latencies_us) / elapsed),
        "p50_us": round(nearest_rank(level.latencies_us, 50), 1),
        "p99_us": round(nearest_rank(level.latencies_us, 99), 1),
    }


def start_server(limit_s: float) -> tuple[subprocess.Popen[bytes], int]:
    server = subprocess.Popen(
        [sys.executable, __file__, SERVE_FLAG, str(limit_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None
    line = server.stdout.readline()  # the port, or EOF if the server failed to start
    if not line.strip().isdigit():
        server.kill()
        server.wait()
        raise SystemExit("echo server did not start")
    return server, int(line)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    assert server.stdin is not None
    server.stdin.close()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == SERVE_FLAG:
        asyncio.run(serve(float(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(
        description="asyncio loopback echo, 2-byte length prefix, N clients (baseline).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", default="1,10,100", help="comma-separated N (1..1000)")
    parser.add_argument("--duration", type=float, default=3.0, help="timed seconds per N")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds per N")
    parser.add_argument("--size", type=int, default=200, help="body bytes per frame")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="per client per N")
    args = parser.parse_args()
    try:
        levels = [int(part) for part in args.clients.split(",")]
    except ValueError:
        parser.error("--clients must be comma-separated integers")
    if not levels or min(levels) < 1 or max(levels) > 1000 or len(levels) > 10:
        parser.error("--clients takes up to 10 values, each 1..1000")
    if not 0 < args.duration <= 120 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 120] and --warmup in [0, 60]")
    if not 1 <= args.size <= 65535 or not 1 <= args.max_requests <= 100_000_000:
        parser.error("--size must be 1..65535 and --max-requests 1..100,000,000")

    limit_s = len(levels) * (args.warmup + args.duration + 10) + 30
    server, port = start_server(limit_s)
    progress(f"echo: server pid {server.pid} on {LOOPBACK}:{port}, {args.size}-byte bodies")
    results: dict[str, dict[str, Any]] = {}
    try:
        for n in levels:
            results[str(n)] = r = asyncio.run(measure(port, n, args))
            progress(f"echo: N={n}: {r['rps']} req/s, p50 {r['p50_us']} us, p99 {r['p99_us']} us")
    finally:
        stop_server(server)
    print(
        json.dumps(
            {
                "name": "baseline_echo_asyncio_loopback",
                "host": LOOPBACK,
                "size": args.size,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
