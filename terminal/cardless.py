"""A cardless withdrawal at the ATM: reserved on a phone, collected by code and/or face.

The customer enters their mobile number and the collection method they chose on the
phone; the reservation code is typed on the PIN pad as a PIN (the clear code never leaves
the pad: the block is bound to the phone number, see :mod:`host_link.cardless`); a face is
captured by the ATM camera, checked for liveness, and only its template goes to the host.
The host answers with the reserved amount, the cash path is the card session's own, and
with no card there is nothing to give back: the session ends at the receipt.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from atm_common.masking import mask_phone
from host_link.cardless import cardless_pan, encode_field63, phone_digits
from host_link.codec import Message
from host_link.codes import Mti, ProcessingCode, response_code
from host_link.errors import CodecError, HostLinkError
from terminal.errors import DeviceError
from terminal.link_security import with_ksn
from terminal.session import CustomerSession, _check_response, _End, _original
from terminal.ui import Screen

log = logging.getLogger(__name__)

METHODS = {"F1": "code", "F2": "face", "F3": "both"}
FACE_FRAMES = 5  # frames per capture: the liveness check needs change across them
FACE_TRIES = 2  # captures before giving up on a face that cannot be found
# The card session's endings, as a session without a card ends them.
ENDINGS = {
    "declined": "cardless_ended",
    "host_unavailable": "cardless_ended",
    "cancel": "cardless_ended",
    "timeout": "cardless_ended",
    "done": "cardless_ended",
    "retracted": "cardless_ended",
    "dispense_failed": "cardless_ended",
}


class CardlessSession(CustomerSession):
    phone = ""
    method = ""

    def fire(self, trigger: str) -> None:
        super().fire(ENDINGS.get(trigger, trigger))

    START = "cardless_chosen"

    def _return_card(self) -> None:
        """No card, nothing to give back."""

    async def _transact(self) -> None:
        self.phone = self._phone()
        self.method = self._method()
        self.result.masked_pan = mask_phone(self.phone)
        if self.method == "face":
            self.fire("face_chosen")
        else:
            self.fire("code_chosen")
        while True:
            template = ""
            if self.method in ("code", "both"):
                self._code()
                self.fire("code_entered_face_next" if self.method == "both" else "code_entered")
            if self.method in ("face", "both"):
                template = self._face()
                self.fire("face_captured")
            fields = self._fields(template)
            response = await self._exchange(
                {"t": Mti.AUTH_REQUEST, "3": ProcessingCode.CARDLESS_INQUIRY} | fields
            )
            code = response["39"]
            self.log("reservation_verification", code=code)
            if code == "00":
                self.fire("reservation_confirmed")
                break
            if code == "55":
                self.display.show(Screen.NOT_MATCHED)
                face_only = self.method == "face"
                self.fire("reservation_rejected_face" if face_only else "reservation_rejected_code")
                continue
            self._decline(code)
        try:
            amount = int(response.get("4", ""))
        except ValueError:
            self.log("host_error", error="approval without the reserved amount")
            self._host_unavailable()
        request = with_ksn(
            self.host.stamp(
                {"t": Mti.FINANCIAL_REQUEST, "3": ProcessingCode.CARDLESS_WITHDRAWAL}
                | {"4": f"{amount:012d}"}
                | fields
            ),
            self.devices.pinpad,
        )
        self._pin_block = b""
        self.log("authorisation_request", durable=True, request=_original(request))
        self.display.show(Screen.PLEASE_WAIT)
        try:
            answer = await self.host.request(request)
            _check_response(answer)
        except (HostLinkError, CodecError) as exc:
            self.log("host_error", error=str(exc))
            await self._reverse(request, dispensed=0)
            self._host_unavailable()
        self.result.response_code = answer["39"]
        self.log("authorisation", durable=True, code=answer["39"], rrn=answer.get("37", ""))
        if answer["39"] != "00":
            self._decline(answer["39"])
        self.fire("approved")
        self._approved_request = _original(request)
        await self._dispense(amount, answer)

    def _phone(self) -> str:
        for _ in range(3):
            self.display.show(Screen.CARDLESS_PHONE)
            entry = self.devices.pinpad.read_keys(
                max_digits=15, timeout=self.config.timeouts.pin, function_keys=False
            )
            self._customer_gave_up(entry.outcome, "phone")
            try:
                phone = phone_digits(entry.keys)
            except ValueError:
                self.display.show(Screen.NOT_MATCHED)
                continue
            self.log("cardless_phone", phone=mask_phone(phone))
            self.fire("phone_entered")
            return phone
        self.fire("cancel")
        raise _End("cancelled")

    def _method(self) -> str:
        while True:
            self.display.show(Screen.CARDLESS_METHOD)
            entry = self.devices.pinpad.read_keys(max_digits=0, timeout=self.config.timeouts.menu)
            self._customer_gave_up(entry.outcome, "method")
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
        self._customer_gave_up(entry.outcome, "code")
        self._pin_block, self._pin_ksn = entry.block, entry.ksn
        self.log("code_entered", digits=entry.digits)

    def _face(self) -> str:
        """The template of the live face in front of the camera (text for field 63)."""
        from atm_common.face.verify import FaceError, FaceVerifier

        camera = self.devices.camera
        if camera is None:
            self.fire("cancel")
            raise _End("no_camera")
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
        raise _End("face_not_captured")

    def _fields(self, template: str) -> Message:
        fields: Message = {
            "32": self.config.acquirer_id,
            "42": self.config.acceptor_id.ljust(15),
            "43": self.config.location.ljust(40),
            "49": self.config.currency,
            "62": self._location(),
            "63": encode_field63(self.phone, self.method, template or None),
        }
        if self._pin_block:
            fields["52" if len(self._pin_block) == 8 else "110"] = self._pin_block.hex().upper()
            if self._pin_ksn:
                fields["53"] = self._pin_ksn
        return fields

    def _decline(self, code: str) -> NoReturn:
        rc = response_code(code)
        self.result.response_code = code
        self.log("declined", code=code, meaning=rc.meaning)
        if code == "75":
            self.display.show(Screen.RESERVATION_CANCELLED)
            self.fire("cardless_ended")
            raise _End("reservation_cancelled")
        self.display.show(Screen.DECLINED, reason=rc.customer_text)
        self.fire("cardless_ended")
        raise _End(f"declined:{code}")

    def _receipt(self) -> None:
        lines = [
            f"Terminal {self.config.terminal_id}  {self.config.location.strip()}",
            f"Cardless withdrawal, phone {self.result.masked_pan or '-'}",
            f"Result {self.result.outcome}",
        ]
        if self.result.dispensed:
            from terminal.ui import money

            lines.append(f"Cash dispensed {money(self.result.dispensed)}")
        receipt = " | ".join(lines)
        self.display.show(Screen.RECEIPT, receipt=receipt)
        self.log("receipt", text=receipt)
        self.fire("session_ended")
