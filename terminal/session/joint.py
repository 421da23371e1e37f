"""A card on a joint account: the personal code, and the wait for a co-owner's approval.

The host asks for the personal code by answering the PIN's 0100 with ``1A``; the code is
typed on the PIN pad and leaves it as a PIN block like the PIN (never clear), in field 61
(``host_link.joint``). A withdrawal or a balance on a joint account is then answered
``09`` with an approval reference: the terminal shows a waiting screen with the
reference and the seconds left, and polls the host with a status inquiry (0100 with
``ST=1``: it moves no money) until a co-owner approves (then the operation is sent again
with the reference and goes the normal way), rejects, or the approval expires. CANCEL
on the waiting screen, or no answer from the host, reverses the request answered ``09``:
the host ends the approval, and nothing was held (see docs/host-link.md, field 61).
"""

from __future__ import annotations

import asyncio
import time

from host_link.codec import Message
from host_link.errors import CodecError, HostLinkError
from host_link.joint import format_field61, parse_field61
from terminal.drivers.pinpad.base import EntryOutcome
from terminal.link_security import with_ksn
from terminal.session.base import CustomerSession, SessionEnd, check_response, original_fields
from terminal.session.cash import CashPath
from terminal.ui import Screen

POLL_SECONDS = 0.25  # between two status inquiries
SLACK_SECONDS = 5.0  # beyond the host's own expiry before the terminal gives up itself


class JointPath:
    """The joint-account steps of one card session (composition, like the cash path)."""

    def __init__(self, session: CustomerSession, cash: CashPath) -> None:
        self.session, self.cash = session, cash
        self.code_block = b""
        self.code_ksn = ""

    @property
    def active(self) -> bool:
        return bool(self.code_block)

    def read_code(self, pan: str) -> None:
        """The host wants the personal code: a second PIN entry on the PIN pad."""
        session = self.session
        session.fire("personal_code_required")
        session.display.show(Screen.ENTER_PERSONAL_CODE)
        entry = session.devices.pinpad.read_pin(pan, timeout=session.config.timeouts.pin)
        session.customer_gave_up(entry.outcome, "personal_code")
        self.code_block, self.code_ksn = entry.block, entry.ksn
        session.log("personal_code_entered", digits=entry.digits)
        session.fire("personal_code_entered")

    def forget(self) -> None:
        self.code_block, self.code_ksn = b"", ""

    def field(self, **more: str) -> Message:
        """Field 61 carrying the code block (and ``more``), or nothing before a code."""
        if not self.code_block:
            return {}
        pairs = {"CB": self.code_block.hex().upper()}
        if self.code_ksn:
            pairs["CK"] = self.code_ksn
        return {"61": format_field61(pairs | more)}

    async def approved(self, request: Message, status: Message) -> Message:
        """Send ``request`` (a withdrawal or balance); wait while it is in progress.

        Returns ``request`` with the approval reference, to be sent once more for the
        operation itself; a decline, a cancel or a failed link ends the session.
        ``status`` is the 0100 to poll with (the PIN fields, without field 61)."""
        session = self.session
        session.log("joint_request", durable=True, request=original_fields(request))
        sent = with_ksn(session.host.stamp(request), session.devices.pinpad)
        try:
            response = await session.host.request(sent)
            check_response(response)
        except (HostLinkError, CodecError) as exc:
            session.log("host_error", error=str(exc))
            await self.cash.reverse(original_fields(sent), dispensed=0)  # in doubt: undo
            session.host_unavailable()
        if response["39"] != "09":
            session.decline(response["39"])  # e.g. 51 or a lock: no approval was asked
        fields = parse_field61(response.get("61", "")) or {}
        ref, left = fields.get("AR", ""), int(fields.get("EX", "0") or 0)
        session.log("approval_pending", ref=ref[:8], seconds=left)
        session.fire("approval_pending")
        deadline = time.monotonic() + left + SLACK_SECONDS
        original = original_fields(sent)
        while True:
            session.display.show(Screen.AWAITING_APPROVAL, ref=ref[:8].upper(), seconds=left)
            entry = session.devices.pinpad.read_keys(  # listens for CANCEL only
                max_digits=0, timeout=POLL_SECONDS, function_keys=False
            )
            if entry.outcome is EntryOutcome.CANCELLED:
                session.log("customer_cancel", at="awaiting_approval")
                await self.cash.reverse(original, dispensed=0)  # the host cancels it
                session.fire("cancel")
                raise SessionEnd("cancelled")
            await asyncio.sleep(POLL_SECONDS)
            if time.monotonic() > deadline:
                await self.cash.reverse(original, dispensed=0)
                session.decline("J3")
            poll = status | self.field(AR=ref, ST="1")
            try:
                answer = await session.exchange(poll)
            except SessionEnd:
                await self.cash.reverse(original, dispensed=0)
                raise
            code = answer["39"]
            if code == "00":
                session.log("approval_granted", ref=ref[:8])
                return request | self.field(AR=ref, **_op(request))
            if code != "09":
                session.decline(code)
            left = int((parse_field61(answer.get("61", "")) or {}).get("EX", "0") or 0)


def _op(request: Message) -> dict[str, str]:
    """The ``OP`` of a balance that needs approval, kept in the request sent again."""
    fields = parse_field61(request.get("61", "")) or {}
    return {"OP": fields["OP"]} if "OP" in fields else {}
