"""Binding the card's account to a payment app, at the ATM (menu F3).

After card and PIN, the terminal asks the host for a binding session (processing code
``PAYAPP_BIND``, :mod:`host_link.binding`); the host gets a binding address from the
payment server and the terminal shows it as a QR code: rendered with segno to a PNG in
the terminal's screen directory (beside the journal, private to the terminal's user),
and on the screen as an image (the kiosk page) or text blocks (the console). The
customer scans it with the payment app and finishes there (SMS code, payment
password); the terminal asks the host every second where the session is and shows
the outcome: bound, failed, or expired. Card and PIN go with every request, as with
any card transaction.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from pathlib import Path

import segno

from atm_common.files import private_dir, write_private
from host_link.binding import parse_status
from terminal import transactions
from terminal.drivers.card_reader.base import CardData
from terminal.session.base import CustomerSession, SessionEnd
from terminal.ui import Image, Screen

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
MAX_POLLS = 400  # a little over the bank's five-minute address lifetime


def ascii_qr(text: str) -> str:
    """The QR code as text, two characters per module, for a text-only screen."""
    qr = segno.make_qr(text, error="m")
    return "\n".join(
        "".join("##" if dark else "  " for dark in row) for row in qr.matrix_iter(border=2)
    )


def render_png(text: str, directory: Path, name: str) -> Path:
    """The QR code as a PNG a screen shows (and the demo's payment app scans)."""
    path = private_dir(directory) / f"{name}.png"
    png = io.BytesIO()
    segno.make_qr(text, error="m").save(png, kind="png", scale=6, border=4)
    # whole or not at all: whoever watches the folder never reads half an image
    part = write_private(path.with_name(path.name + ".part"), png.getvalue())
    os.replace(part, path)
    return path


def qr_image(text: str) -> Image:
    """The QR code for a screen: a PNG data URI for a page (the kiosk shows it as an
    image), with :func:`ascii_qr` as its text form for the console."""
    uri = segno.make_qr(text, error="m").png_data_uri(scale=8, border=4)
    return Image(uri, text=ascii_qr(text))


class PaymentAppBinding:
    """The binding step of one card session (its card, PIN block and host link)."""

    def __init__(self, session: CustomerSession, card: CardData) -> None:
        self.session, self.card = session, card
        self.qr_path: Path | None = None

    async def run(self) -> None:
        """From the menu to the outcome; always ends the session (:class:`SessionEnd`)."""
        s = self.session
        session_id: str | None = None
        shown = False
        for _ in range(MAX_POLLS):
            request = transactions.payapp_binding(
                s.config, self.card, s._pin_block, s._pin_ksn, session_id
            )
            response = await s.exchange(request)
            if response["39"] != "00":
                s.decline(response["39"])
            try:
                status = parse_status(response.get("48", ""))
            except ValueError as exc:
                s.log("host_error", error=str(exc))
                s.host_unavailable()
            session_id = status["S"]
            state = status["ST"]
            if state == "address" and not shown:
                self._show(status["A"], session_id)
                shown = True
            elif state == "bound":
                s.display.show(Screen.BINDING_DONE)
                s.log("payapp_bound")
                s.fire("bound")
                raise SessionEnd("payapp_bound")
            elif state in ("failed", "expired"):
                reason = status.get("R") or state
                s.display.show(Screen.BINDING_FAILED, reason=reason)
                s.log("payapp_binding_failed", status=state, reason=reason)
                s.fire("binding_failed")
                raise SessionEnd(f"payapp_{state}")
            await asyncio.sleep(POLL_SECONDS)
        s.display.show(Screen.BINDING_FAILED, reason="no answer in time")
        s.fire("binding_failed")
        raise SessionEnd("payapp_expired")

    def _show(self, address: str, session_id: str) -> None:
        s = self.session
        directory = s.config.journal.parent / "screens"
        self.qr_path = render_png(address, directory, f"bind-{s.id}")
        s.display.show(Screen.BINDING_QR, png=str(self.qr_path), qr=qr_image(address))
        s.log("payapp_qr_shown", png=str(self.qr_path))  # never the address: single-use
        s.fire("binding_shown")
