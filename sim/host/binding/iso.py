"""The terminal's side of a binding at the host: processing code ``PAYAPP_BIND``.

The ATM sends a 0100 with the card and PIN (checked like a balance inquiry, every time)
and field 48 empty to open a session for the card's account, or ``S=<session id>`` to
ask where it is. The answer's field 48 is ``S=<id>;ST=<status>`` plus ``A=<address>``
while there is one and ``R=<reason>`` once failed. The ATM shows the address as a QR
code and asks again every second or so until the status is final. Opening a session
writes its request to the payment server into the outbox inside the ISO request's own
transaction (a repeat of the same request gets the stored answer, not a second session).
"""

from __future__ import annotations

from collections.abc import Mapping

from host_link.binding import encode_status, parse_request
from sim.host.binding.desk import BindingDesk
from sim.host.cardless.errors import PhoneError

FINAL = ("bound", "failed", "expired")


def handle(
    desk: BindingDesk, request: Mapping[str, str], person_id: str, account: str
) -> tuple[str, str]:
    """(response code, field 48) for a card-and-PIN-verified binding request."""
    try:
        session_id = parse_request(request.get("48", ""))
    except ValueError:
        return "30", ""
    try:
        if session_id is None:
            view = desk.open(person_id, account, "atm_qr", terminal_id=request.get("41"))
        else:
            view = desk.view(session_id, person_id)
    except PhoneError as exc:
        code = "12" if exc.status == 404 else "91" if exc.status in (410, 503) else "57"
        return code, ""
    return "00", encode_status(view["session_id"], view["status"], view["address"], view["reason"])
