"""A real pcscd with vpcd readers, kept in a private network namespace.

Why: the PC/SC driver is tested through the real daemon (principle 1), but vpcd listens
on 0.0.0.0:35963/35964 for anyone to plug a "card" into. Running pcscd and the virtual
cards in a network namespace of their own (``unshare -n``) keeps those ports off the
network. The mount namespace is shared, so pcscd's socket still appears at
``/run/pcscd/pcscd.comm`` and pyscard in the normal namespace reaches it as usual.

Pieces, each a child process stopped by its PID: a *holder* (``unshare -n``, keeps the
namespace alive across pcscd restarts, exits when our end of its stdin closes), pcscd
(``nsenter`` into the holder's namespace, foreground, reading the reader entry this
module writes into a temp dir via ``-c``), and cards (``python -m sim.devices.vcard
--control`` the same way). Every child also gets ``PR_SET_PDEATHSIG`` so nothing outlives
a crashed test run.

Use as a context manager (``with PcscEnv() as env: env.start_card(...)``) or from the
shell: ``python -m sim.devices.pcsc_env`` (runs until Ctrl-C; ``--check`` starts, lists
the readers and stops).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from atm_common.errors import AtmError
from sim.devices.vcard import CardProfile, load_seed_card

log = logging.getLogger(__name__)

VPCD_LIBS = ("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "/usr/lib/pcsc/drivers/libifdvpcd.so")
READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
SLOT_PORTS = (35963, 35964)
DEFAULT_SEED = Path(__file__).resolve().parents[1] / "data" / "demo-seed.toml"
PCSCD_RUN = Path("/run/pcscd")
TOOLS = ("unshare", "nsenter", "ip", "pcscd")
READER_CONF = """\
# Written by sim.devices.pcsc_env: vsmartcard's vpcd in server mode, two slots
# (cards connect to 35963 and 35964). Never the reversed 127.0.0.1 form: pcscd aborts.
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      {lib}
CHANNELID    0x8C7B
"""


class PcscEnvError(AtmError):
    """The PC/SC test environment cannot be set up (missing tool, other pcscd, ...)."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_ticks(seconds: float) -> None:
    """Pause between readiness probes without ``time.sleep`` (principle 6)."""
    threading.Event().wait(seconds)


def live_pcscd_pids() -> list[int]:
    """PIDs of running (not zombie) pcscd processes on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            comm, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
            if comm == "pcscd" and state not in "ZX":
                pids.append(int(entry.name))
    return pids


def find_vpcd_lib() -> str:
    """The vpcd driver path, from Debian's own reader entry if present."""
    packaged = Path("/etc/reader.conf.d/vpcd")
    if packaged.is_file():
        for line in packaged.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "LIBPATH" and Path(parts[1]).exists():
                return parts[1]
    for lib in VPCD_LIBS:
        if Path(lib).exists():
            return lib
    raise PcscEnvError("vpcd driver not found: apt-get install vsmartcard-vpcd")


def list_readers() -> list[str] | None:
    """Reader names pcscd offers, or None while the daemon does not answer."""
    from smartcard import scard  # optional dependency (extra "pcsc")

    rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        return None
    try:
        rv, names = scard.SCardListReaders(context, [])
        return list(names) if rv == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(context)


def wait_reader_state(reader: str, present: bool, timeout: float = 10.0) -> None:
    """Block until pcscd reports a card in ``reader`` (or none), using its own wait."""
    from smartcard import scard

    rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        raise PcscEnvError(f"pcscd not reachable (0x{rv & 0xFFFFFFFF:08X})")
    try:
        deadline = time.monotonic() + timeout
        state = scard.SCARD_STATE_UNAWARE
        while True:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
            rv, states = scard.SCardGetStatusChange(context, wait_ms, [(reader, state)])
            if rv == scard.SCARD_E_TIMEOUT:
                raise PcscEnvError(f"{reader}: card {'not seen' if present else 'not gone'}")
            if rv != scard.SCARD_S_SUCCESS:
                raise PcscEnvError(f"{reader}: SCardGetStatusChange 0x{rv & 0xFFFFFFFF:08X}")
            state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            if bool(state & scard.SCARD_STATE_PRESENT) == present:
                return
    finally:
        scard.SCardReleaseContext(context)


class CardProcess:
    """A ``vcard --control`` child: insert/remove on command, events read from stdout."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.port = proc, port
        self.events: list[str] = []
        self._buffer = b""

    def _send(self, command: str) -> None:
        if self.proc.poll() is not None or self.proc.stdin is None:
            raise PcscEnvError(f"card on port {self.port} has exited ({self.proc.returncode})")
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_event(self, *wanted: str, timeout: float = 10.0) -> str:
        """Block until the card reports one of ``wanted`` (or an error) and return it."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buffer:
                    line, _, self._buffer = self._buffer.partition(b"\n")
                    event = line.decode(errors="replace").strip()
                    self.events.append(event)
                    if event in wanted or event.startswith("error"):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise PcscEnvError(f"card on {self.port}: no {'/'.join(wanted)} in {timeout}s")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise PcscEnvError(f"card on port {self.port} exited; events {self.events}")
                self._buffer += chunk

    @property
    def reader(self) -> str:
        return READERS[SLOT_PORTS.index(self.port)]

    def insert(self, wait_seen: bool = True, timeout: float = 10.0) -> None:
        """Connect to vpcd; by default return once pcscd reports the card present."""
        self._send("insert")
        event = self.wait_event("inserted", timeout=timeout)
        if event.startswith("error"):
            raise PcscEnvError(f"card on port {self.port}: {event}")
        if wait_seen:
            wait_reader_state(self.reader, present=True, timeout=timeout)

    def remove(self, wait_gone: bool = True, timeout: float = 10.0) -> None:
        """Disconnect from vpcd; by default return once pcscd reports the slot empty."""
        self._send("remove")
        self.wait_event("removed", timeout=timeout)
        if wait_gone:
            wait_reader_state(self.reader, present=False, timeout=timeout)

    def stop(self) -> None:
        """Quit the card (idempotent): ``quit``, then SIGTERM, then SIGKILL."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, PcscEnvError):
                self._send("quit")
        _reap(self.proc, f"card {self.port}")
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _reap(proc: subprocess.Popen[Any], what: str, grace: float = 3.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    if proc.poll() is None:
        log.warning("%s (PID %d) ignored SIGTERM; killing it", what, proc.pid)
        proc.kill()
        proc.wait()


class PcscEnv:
    """pcscd + vpcd readers + virtual cards in a private network namespace."""

    def __init__(
        self, readers: tuple[str, ...] = READERS, ready_timeout: float = 15.0, debug: bool = False
    ) -> None:
        self.readers, self.ready_timeout, self.debug = readers, ready_timeout, debug
        self.workdir: Path | None = None
        self.holder: subprocess.Popen[bytes] | None = None
        self.pcscd: subprocess.Popen[bytes] | None = None
        self.cards: list[CardProcess] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- set-up ----------------------------------------------------------------------------

    @staticmethod
    def check_prerequisites() -> None:
        """Raise :class:`PcscEnvError` naming whatever is missing."""
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise PcscEnvError(
                f"missing {', '.join(missing)}: apt-get install pcscd vsmartcard-vpcd "
                "util-linux iproute2 (pcscd is in /usr/sbin: is it on PATH?)"
            )
        find_vpcd_lib()
        if os.geteuid() != 0:
            raise PcscEnvError("unshare -n needs root (CAP_SYS_ADMIN)")
        try:
            import smartcard.scard  # noqa: F401
        except ImportError as exc:
            raise PcscEnvError("pyscard is not installed: pip install -e '.[pcsc]'") from exc

    @property
    def holder_pid(self) -> int:
        if self.holder is None or self.holder.poll() is not None:
            raise PcscEnvError("the namespace holder is not running (start() first)")
        return self.holder.pid

    @property
    def netns(self) -> str:
        """``/proc/PID/ns/net`` of the private namespace, for ``nsenter --net=``."""
        return f"/proc/{self.holder_pid}/ns/net"

    def nsenter(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.netns}", "--", *argv]

    def _log(self, name: str) -> IO[bytes]:
        assert self.workdir is not None
        handle = (self.workdir / name).open("ab")
        self._logs.append(handle)
        return handle

    def spawn(self, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace; it dies with this process."""
        return subprocess.Popen(self.nsenter(argv), preexec_fn=_die_with_parent, **popen)

    def start(self) -> None:
        if self.holder is not None:
            return
        self.check_prerequisites()
        self._refuse_foreign_pcscd()
        self.workdir = Path(tempfile.mkdtemp(prefix="atm-pcsc-"))
        conf = self.workdir / "reader.conf.d"
        conf.mkdir()
        (conf / "vpcd").write_text(READER_CONF.format(lib=find_vpcd_lib()))
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec cat >/dev/null"],
            stdin=subprocess.PIPE,
            stderr=self._log("holder.log"),
            preexec_fn=_die_with_parent,
        )
        try:
            deadline = time.monotonic() + 5.0
            while os.readlink(self.netns) == os.readlink("/proc/self/ns/net"):
                if time.monotonic() > deadline:
                    raise PcscEnvError(f"unshare -n did not make a namespace: {self.tail()}")
                _wait_ticks(0.02)
            self.start_pcscd()
        except BaseException:
            self.stop()
            raise
        log.info("PC/SC environment up: netns of PID %d, readers %s", self.holder_pid, self.readers)

    def _refuse_foreign_pcscd(self) -> None:
        ours = {self.pcscd.pid} if self.pcscd is not None else set()
        foreign = [pid for pid in live_pcscd_pids() if pid not in ours]
        if foreign:
            cmd = Path(f"/proc/{foreign[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            raise PcscEnvError(
                f"another pcscd is running (PID {foreign[0]}: {cmd.strip()}); it owns "
                f"{PCSCD_RUN}/pcscd.comm. Stop it (systemctl stop pcscd.socket pcscd, or kill "
                "that PID if it is yours) and retry"
            )

    def start_pcscd(self) -> None:
        """(Re)start pcscd in the namespace and wait until pyscard lists our readers."""
        if self.pcscd is not None and self.pcscd.poll() is None:
            return
        assert self.workdir is not None
        self._refuse_foreign_pcscd()
        conf = str(self.workdir / "reader.conf.d")
        self.pcscd = self.spawn(
            ["pcscd", "--foreground", "--config", conf, *(["--debug"] if self.debug else [])],
            stdout=self._log("pcscd.log"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.ready_timeout
        while True:
            names = list_readers()
            if names is not None and all(r in names for r in self.readers):
                return
            if self.pcscd.poll() is not None:
                raise PcscEnvError(f"pcscd exited ({self.pcscd.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                raise PcscEnvError(
                    f"pcscd up but readers {names} lack {self.readers} after "
                    f"{self.ready_timeout}s: {self.tail()}"
                )
            _wait_ticks(0.05)

    def stop_pcscd(self) -> None:
        """Stop our pcscd (idempotent); clear its run files if it died without cleaning."""
        if self.pcscd is None:
            return
        proc, self.pcscd = self.pcscd, None
        if proc.poll() is None:
            proc.terminate()
        _reap(proc, "pcscd", grace=5.0)
        pid_file = PCSCD_RUN / "pcscd.pid"
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text().strip()) == proc.pid:
                pid_file.unlink()
                (PCSCD_RUN / "pcscd.comm").unlink(missing_ok=True)

    def start_card(
        self, profile: CardProfile, port: int = SLOT_PORTS[0], mode: str = "normal", **extra: str
    ) -> CardProcess:
        """A card in ``--control`` mode for the slot at ``port``, not yet inserted."""
        argv = [sys.executable, "-m", "sim.devices.vcard", "--control", "--port", str(port)]
        argv += ["--pan", profile.pan, "--expiry", profile.expiry, "--name", profile.name]
        argv += ["--aid", profile.aid, "--service-code", profile.service_code, "--mode", mode]
        if profile.track2:
            argv += ["--track2", profile.track2]
        for key, value in extra.items():
            argv += [f"--{key.replace('_', '-')}", value]
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        }
        proc = self.spawn(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log("cards.log"),
            env=env,
        )
        card = CardProcess(proc, port)
        self.cards.append(card)
        card.wait_event("ready")
        return card

    def tail(self, lines: int = 15) -> str:
        """The end of the logs, for error messages."""
        if self.workdir is None:
            return ""
        out = []
        for name in ("holder.log", "pcscd.log", "cards.log"):
            path = self.workdir / name
            if path.exists() and path.stat().st_size:
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        """Stop cards, pcscd and the holder by PID; safe to call twice."""
        for card in self.cards:
            card.stop()
        self.cards.clear()
        self.stop_pcscd()
        if self.holder is not None:
            holder, self.holder = self.holder, None
            if holder.stdin is not None:
                with contextlib.suppress(OSError):
                    holder.stdin.close()  # cat sees EOF and the namespace goes with it
            _reap(holder, "namespace holder")
        for handle in self._logs:
            handle.close()
        self._logs.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.devices.pcsc_env", description=__doc__)
    parser.add_argument("--check", action="store_true", help="start, list readers, stop")
    parser.add_argument(
        "--card",
        action="append",
        default=[],
        metavar="PAN",
        help="insert this seed card (first one in slot 00 00, second in 00 01)",
    )
    parser.add_argument("--seed", default=str(DEFAULT_SEED), help="seed file for --card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with PcscEnv() as env:
            for pan, port in zip(args.card, SLOT_PORTS, strict=False):
                env.start_card(load_seed_card(args.seed, pan), port).insert()
            sys.stdout.write(f"readers: {list_readers()}\nnetns: {env.netns}\n")
            if not args.check:
                sys.stdout.write(
                    f"cards: nsenter --net={env.netns} {sys.executable} -m sim.devices.vcard "
                    "--port 35963 --pan ... --expiry YYMM\nCtrl-C to stop\n"
                )
                sys.stdout.flush()
                with contextlib.suppress(KeyboardInterrupt):
                    stop.wait()
    except (PcscEnvError, KeyError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
