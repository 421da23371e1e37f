"""A cardless withdrawal at the ATM: reserved on a phone, collected by code and/or face.

The customer enters their mobile number and the collection method they chose on the
phone; the reservation code is typed on the PIN pad as a PIN (the clear code never leaves
the pad: the block is bound to the phone number, see :mod:`host_link.cardless`); a face is
captured by the ATM camera, checked for liveness, and only its template goes to the host.
The host confirms the reservation (0100) with the reserved amount; the 0200 and the payout
then go through the same :class:`~terminal.session.cash.CashPath` as a card withdrawal.
With no card there is nothing to give back: the state table's ``no card`` rows take every
ending of this session straight to the receipt.
"""

from __future__ import annotations

import logging
from typing import Any

from atm_common.masking import mask_phone
from host_link.cardless import cardless_pan, encode_field63, phone_digits
from host_link.codec import Message
from host_link.codes import Mti, ProcessingCode, ResponseCode
from terminal.errors import DeviceError
from terminal.link_security import with_ksn
from terminal.session.base import CustomerSession, SessionEnd
from terminal.session.cash import CashPath
from terminal.ui import Screen

log = logging.getLogger(__name__)

METHODS = {"F1": "code", "F2": "face", "F3": "both"}
FACE_FRAMES = 5  # frames per capture: the liveness check needs change across them
FACE_TRIES = 2  # captures before giving up on a face that cannot be found
PHONE_TRIES = 3  # malformed numbers before the session is cancelled


class CardlessSession(CustomerSession):
    """A session begun by choosing "cardless withdrawal" on the idle screen."""

    START = "cardless_chosen"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phone = ""
        self.method = ""
        self.cash = CashPath(self)

    async def transact(self) -> None:
        self.phone = self._phone()
        self.method = self._method()
        self.result.masked_pan = mask_phone(self.phone)
        self.fire("face_chosen" if self.method == "face" else "code_chosen")
        response, fields = await self._verify_reservation()
        try:
            amount = int(response.get("4", ""))
        except ValueError:
            self.log("host_error", error="approval without the reserved amount")
            self.host_unavailable()
        request = with_ksn(
            self.host.stamp(
                {"t": Mti.FINANCIAL_REQUEST, "3": ProcessingCode.CARDLESS_WITHDRAWAL}
                | {"4": f"{amount:012d}"}
                | fields
            ),
            self.devices.pinpad,
        )
        await self.cash.authorise(request, note_evidence=False)
        await self.cash.dispense(amount)

    async def _verify_reservation(self) -> tuple[Message, Message]:
        """Code and/or face until the host confirms the reservation (0100): its answer
        and the fields that identify the reservation for the 0200."""
        while True:
            template = ""
            if self.method in ("code", "both"):
                self._code()
                self.fire("code_entered_face_next" if self.method == "both" else "code_entered")
            if self.method in ("face", "both"):
                template = self._face()
                self.fire("face_captured")
            fields = self._fields(template)
            response = await self.exchange(
                {"t": Mti.AUTH_REQUEST, "3": ProcessingCode.CARDLESS_INQUIRY} | fields
            )
            code = response["39"]
            self.log("reservation_verification", code=code)
            if code == "00":
                self.fire("reservation_confirmed")
                return response, fields
            if code == "55":
                self.display.show(Screen.NOT_MATCHED)
                face_only = self.method == "face"
                self.fire("reservation_rejected_face" if face_only else "reservation_rejected_code")
                continue
            self.decline(code)

    def _phone(self) -> str:
        for _ in range(PHONE_TRIES):
            self.display.show(Screen.CARDLESS_PHONE)
            entry = self.devices.pinpad.read_keys(
                max_digits=15, timeout=self.config.timeouts.pin, function_keys=False
            )
            self.customer_gave_up(entry.outcome, "phone")
            try:
                phone = phone_digits(entry.keys)
            except ValueError:
                self.display.show(Screen.NOT_MATCHED)
                continue
            self.log("cardless_phone", phone=mask_phone(phone))
            self.fire("phone_entered")
            return phone
        self.fire("cancel")
        raise SessionEnd("cancelled")

    def _method(self) -> str:
        while True:
            self.display.show(Screen.CARDLESS_METHOD)
            entry = self.devices.pinpad.read_keys(max_digits=0, timeout=self.config.timeouts.menu)
            self.customer_gave_up(entry.outcome, "method")
            method = METHODS.get(entry.keys)
            if method in ("face", "both") and self.devices.camera is None:
                continue  # no camera here: only the code can be collected
            if method is not None:
                self.log("cardless_method", method=method)
                return method

    def _code(self) -> None:
        self.display.show(Screen.ENTER_CODE)
        entry = self.devices.pinpad.read_pin(
            cardless_pan(self.phone), min_digits=4, max_digits=12, timeout=self.config.timeouts.pin
        )
        self.customer_gave_up(entry.outcome, "code")
        self._pin_block, self._pin_ksn = entry.block, entry.ksn
        self.log("code_entered", digits=entry.digits)

    def _face(self) -> str:
        """The template of the live face in front of the camera (text for field 63)."""
        from atm_common.face.verify import FaceError, FaceVerifier  # optional engine

        camera = self.devices.camera
        if camera is None:
            self.fire("cancel")
            raise SessionEnd("no_camera")
        verifier = FaceVerifier()
        for attempt in range(1, FACE_TRIES + 1):
            self.display.show(Screen.LOOK_AT_CAMERA)
            try:
                frames = [camera.capture() for _ in range(FACE_FRAMES)]
                liveness = verifier.liveness(frames)
                if not liveness.live:
                    self.log("face_not_live", attempt=attempt, reason=liveness.reason)
                    continue
                template = verifier.template(frames[-1])
            except FaceError as exc:
                self.log("face_not_captured", attempt=attempt, reason=str(exc))
                continue
            except DeviceError as exc:
                self.log("camera_error", error=str(exc))
                break
            self.log("face_captured", attempt=attempt, frames=len(frames))
            return template.to_text()
        self.fire("cancel")
        raise SessionEnd("face_not_captured")

    def _fields(self, template: str) -> Message:
        """The fields both cardless requests carry: phone, method, face and code block."""
        fields: Message = {
            "32": self.config.acquirer_id,
            "42": self.config.acceptor_id.ljust(15),
            "43": self.config.location.ljust(40),
            "49": self.config.currency,
            "62": self.location(),
            "63": encode_field63(self.phone, self.method, template or None),
        }
        if self._pin_block:
            fields["52" if len(self._pin_block) == 8 else "110"] = self._pin_block.hex().upper()
            if self._pin_ksn:
                fields["53"] = self._pin_ksn
        return fields

    def decline_specially(self, code: str, rc: ResponseCode) -> None:
        """Too many wrong codes: the host has cancelled the reservation (75)."""
        if code == "75":
            self.display.show(Screen.RESERVATION_CANCELLED)
            self.fire("declined")
            raise SessionEnd("reservation_cancelled")

    def hand_back(self) -> None:
        """No card, nothing to give back."""

    def receipt_customer(self) -> str:
        return f"Cardless withdrawal, phone {self.result.masked_pan or '-'}"
