"""The kiosk page and its WebSocket, served by uvicorn on 127.0.0.1 in a thread of the
terminal process (the stack the simulator's services use: FastAPI/starlette + uvicorn).

Who may drive the screen: only a page that presents this boot's token (in the page's
URL, handed to the browser the terminal starts) from this server's own origin; anything
else is refused before the socket opens. On every connect the page gets the current
snapshot, then every change; the server sends a heartbeat the page must answer, and the
display counts the answers (:meth:`KioskDisplay.responsive`). Messages from the page are
small JSON objects: ``{"type": "key", "key": "F1"}`` and ``{"type": "pong"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, PlainTextResponse

from atm_common.errors import AtmError
from terminal.kiosk.display import KioskDisplay, Snapshot

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
MAX_MESSAGE = 256  # bytes: a key press or a pong; anything longer is not from our page
STARTUP_TIMEOUT = 10.0


def new_token() -> str:
    """The per-boot token: random, never logged or written to a file."""
    return secrets.token_urlsafe(24)


def create_app(display: KioskDisplay, token: str, origins: set[str]) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    page = PAGE.read_text(encoding="utf-8")

    def token_ok(given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), token.encode())

    @app.get("/")
    async def index(token: str | None = None) -> Any:
        if not token_ok(token):
            return PlainTextResponse("This screen needs the terminal's token.", status_code=403)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.websocket("/ws")
    async def socket_(ws: WebSocket) -> None:
        origin = ws.headers.get("origin", "")
        if origin not in origins or not token_ok(ws.query_params.get("token")):
            log.warning("kiosk socket refused (origin %r or token)", origin[:60])
            await ws.close(code=4403)
            return
        await ws.accept()
        await serve_page(ws, display)

    return app


async def serve_page(ws: WebSocket, display: KioskDisplay) -> None:
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[Snapshot | dict[str, Any]] = asyncio.Queue()

    def changed(snap: Snapshot) -> None:  # called on the session's thread
        loop.call_soon_threadsafe(outbox.put_nowait, snap)

    unsubscribe = display.subscribe(changed)
    display.answered()
    await outbox.put(display.snapshot())

    async def send() -> None:
        while True:
            await ws.send_text(json.dumps(await outbox.get(), ensure_ascii=False))

    async def beat() -> None:
        while True:
            await asyncio.sleep(display.heartbeat)
            await outbox.put({"type": "ping"})

    tasks = [asyncio.create_task(send()), asyncio.create_task(beat())]
    try:
        while True:
            raw = await ws.receive_text()
            message = parse(raw)
            if message is None:
                await outbox.put({"type": "error", "error": "unreadable message"})
            elif message.get("type") == "pong":
                display.answered()
            elif message.get("type") == "key" and isinstance(message.get("key"), str):
                key = message["key"]
                if not display.press(key):
                    await outbox.put({"type": "refused", "key": key[:12]})
    except WebSocketDisconnect:
        pass
    finally:
        unsubscribe()
        for task in tasks:
            task.cancel()


def parse(raw: str) -> dict[str, Any] | None:
    if len(raw) > MAX_MESSAGE:
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class _Server(uvicorn.Server):
    """uvicorn on a thread of the terminal: the terminal handles the signals."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


class KioskServer:
    """Serves ``display`` on ``host:port`` (0: any free port) until :meth:`stop`."""

    def __init__(
        self, display: KioskDisplay, host: str = "127.0.0.1", port: int = 0, token: str = ""
    ) -> None:
        self.display, self.host, self.port = display, host, port
        self.token = token or new_token()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address without the token (safe to print)."""
        return f"http://{self.host}:{self.port}/"

    def page_url(self) -> str:
        """The page's address with the token: for the browser only."""
        return f"{self.url}?token={self.token}"

    def start(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise AtmError(f"kiosk page cannot listen on {self.host}:{self.port}: {exc}") from None
        self.port = int(sock.getsockname()[1])
        origins = {f"http://{self.host}:{self.port}", f"http://localhost:{self.port}"}
        config = uvicorn.Config(
            create_app(self.display, self.token, origins),
            log_config=None,
            lifespan="off",
            access_log=False,
            ws="websockets-sansio",
            ws_max_size=4096,
            ws_ping_interval=None,  # the display's own heartbeat, answered by the page
            timeout_graceful_shutdown=2,
        )
        server = _Server(config)
        thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name="kiosk-page"
        )
        thread.daemon = True
        thread.start()
        server.ready.wait(STARTUP_TIMEOUT)
        self._server, self._thread = server, thread
        if not server.started:
            self.stop()
            raise AtmError(f"kiosk page did not start on {self.host}:{self.port}")
        log.info("kiosk page on %s", self.url)
        return self.port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
