"""Customer sessions: the controllers that drive the customer state machine.

- :mod:`terminal.session.base`: what every session does (:class:`CustomerSession`:
  journal, firing triggers, the run from start to receipt, declines, giving up,
  evidence), the result and the :class:`SessionEnd` that unwinds a session.
- :mod:`terminal.session.cash`: the cash path both kinds share, by composition
  (:class:`CashPath`: authorise, reverse when in doubt, dispense, present, retract).
- :mod:`terminal.session.card`: the card session (:class:`CardSession`).
- :mod:`terminal.session.cardless`: the phone-reserved withdrawal (:class:`CardlessSession`).

Sessions never decide where a trigger leads: the table in :mod:`terminal.fsm.customer`
does, with guards where the card and cardless paths part.
"""

from terminal.session.base import (
    ORIGINAL_FIELDS,
    CustomerSession,
    SessionEnd,
    SessionResult,
    check_response,
    original_fields,
)
from terminal.session.card import CardSession
from terminal.session.cardless import CardlessSession
from terminal.session.cash import CashPath

__all__ = [
    "ORIGINAL_FIELDS",
    "CardSession",
    "CardlessSession",
    "CashPath",
    "CustomerSession",
    "SessionEnd",
    "SessionResult",
    "check_response",
    "original_fields",
]
