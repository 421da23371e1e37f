"""How the cardless bearer ids appear in logs: as a short fingerprint, never themselves.

A request id is the phone session's only credential and a reservation id the
reservation's (there is no login in this simulator): whoever reads one in a log can
carry on the session, look at the reservation or cancel it. So the host logs a
fingerprint instead: enough to follow one id through a log and to find it again from
the id the customer quotes, but not to get the id back (it is 80 random bits; 32 bits
of a hash of it narrow nothing down). Codes (the SMS code, the reservation code) are
never logged in any form: six digits would be found from any hash of them at once.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["fingerprint", "redact"]

# ReservationBook.token(): 80 random bits as 20 lower-case hex digits.
_TOKEN = re.compile(r"\b[0-9a-f]{20}\b")


def fingerprint(token: str | None) -> str:
    """``id#`` and 8 hex digits of a hash of ``token`` ("-" for none)."""
    if not token:
        return "-"
    digest = hashlib.sha256(b"cardless-id:" + token.encode()).hexdigest()
    return f"id#{digest[:8]}"


def redact(text: str) -> str:
    """``text`` with every id-shaped token replaced by its fingerprint: for messages
    (refusals) that name a request or reservation to the caller but go to the log too."""
    return _TOKEN.sub(lambda found: fingerprint(found.group(0)), text)
