"""Card, PIN and amount rules, each decline a response code from the table.

The order is chosen so the answers are no oracle for someone who has a PAN but not the
card: message format (30); the card, known *and* field 14 equal to its expiry, else 14 -
an unknown PAN and a known PAN with a wrong expiry get the same code, at the same point,
before anything about the card is revealed; a dead card's status (75 retained, 57
blocked), since a PIN checked on a card that can no longer lock would be a free guessing
oracle; the PIN (55, and 75 with the card to be retained on the last try); and only once
the PIN is right the rest of the card's state: expired (54), no account or a locked one
(57); then amount (13), limit (61) and funds (51).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3

from atm_common.clock import Clock
from atm_common.errors import KeyUnavailable
from atm_common.masking import mask_pan
from host_link.codec import Message
from sim.host.keys import KeyStore
from sim.host.ledger import Ledger, balance_of
from sim.host.settings import HostKeys, HostSettings

log = logging.getLogger(__name__)


# The decline for a card the host cannot match: unknown PAN, or field 14 not its expiry.
CARD_NOT_RECOGNISED = "14"

# The tables of cards that carry a PIN: customers' and supervisors' (each has pan_ref,
# pan_masked, expiry, pin_offset, pin_tries, status); the statements are fixed text.
_CARD_TABLES = ("cards", "supervisor_cards")
_SELECT_CARD = {t: f"SELECT * FROM {t} WHERE pan_ref = ?" for t in _CARD_TABLES}
_CLEAR_TRIES = {t: f"UPDATE {t} SET pin_tries = 0 WHERE pan_ref = ?" for t in _CARD_TABLES}
_COUNT_TRY = {
    t: f"UPDATE {t} SET pin_tries = ?, status = ? WHERE pan_ref = ?" for t in _CARD_TABLES
}


class Decline(Exception):
    """A business decline carrying its ISO 8583 response code (never escapes the host)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code


@dataclasses.dataclass(frozen=True)
class CardSession:
    """What the rules learned about a verified card, for the response and the posting."""

    pan_ref: str
    pan_masked: str
    account: str
    currency: str
    ledger_balance: int
    available: int
    withdrawn_today: int
    daily_limit: int
    duress: bool = False
    safety_amount: int = 0

    @property
    def withdrawal_limit(self) -> int:
        """The most the terminal may offer: available funds within today's remaining limit,
        and under duress no more than the account's safety amount (it is shown where the
        normal limit is shown, so the terminal cannot tell)."""
        limit = min(self.available, self.daily_limit - self.withdrawn_today)
        if self.duress:
            limit = min(limit, self.safety_amount)
        return max(0, limit)


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts characters int() refuses."""
    return text.isascii() and text.isdigit()


def _require(request: Message, *fields: str) -> None:
    for field in fields:
        if not request.get(field):
            raise Decline("30", f"field {field} missing")


class RuleBook:
    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: HostKeys,
        store: KeyStore,
        settings: HostSettings,
        clock: Clock,
    ) -> None:
        self.conn, self.keys, self.settings, self.clock = conn, keys, settings, clock
        self.store = store

    def verify_card_and_pin(self, request: Message) -> CardSession:
        pan, card = self.known_card(request)
        if card["status"] == "retained":
            raise Decline("75", f"card {card['pan_masked']} is to be retained")
        if card["status"] != "active":
            raise Decline("57", f"card {card['pan_masked']} is {card['status']}")
        duress = self._check_pin(request, pan, card)
        self.check_expiry(card)
        return self._session(card, duress=duress)

    def known_card(self, request: Message, table: str = "cards") -> tuple[str, sqlite3.Row]:
        """The PAN and the card's row in ``table`` (``cards``, or ``supervisor_cards``:
        sim/host/supervision/cards.py), checked in the order that is no oracle: format,
        terminal, then card known *and* field 14 its expiry, both failures one code."""
        _require(request, "2", "14", "41", "49")
        if not (request.get("52") or request.get("110")):
            raise Decline("30", "no PIN block (field 52 or 110)")
        pan, terminal = request["2"], request["41"]
        if terminal not in self.store.terminals:
            raise Decline("58", f"unknown terminal {terminal}")
        pan_ref = self.keys.pan_ref(pan)
        card = self.conn.execute(_SELECT_CARD[table], (pan_ref,)).fetchone()
        # One code for both: telling them apart would confirm a guessed PAN is a card.
        if card is None:
            raise Decline(CARD_NOT_RECOGNISED, f"unknown card {mask_pan(pan)}")
        if request["14"] != card["expiry"]:
            raise Decline(CARD_NOT_RECOGNISED, f"expiry mismatch on {card['pan_masked']}")
        return pan, card

    def check_expiry(self, card: sqlite3.Row) -> None:
        """54 for a card past its expiry month (asked only once the PIN is right)."""
        today = self.clock.now().date()
        year, month = 2000 + int(card["expiry"][:2]), int(card["expiry"][2:])
        if (year, month) < (today.year, today.month):
            raise Decline("54", f"card {card['pan_masked']} expired")

    def _check_pin(self, request: Message, pan: str, card: sqlite3.Row) -> bool:
        """True for the duress PIN, False for the normal one; a wrong PIN declines."""
        try:
            good = self.store.verify_pin(request, pan, self.keys.pvk, card["pin_offset"])
            # both PINs are always checked, so a duress PIN costs no more time than the
            # normal one: the answer's timing must not tell them apart
            duress = bool(card["duress_offset"]) and self.store.verify_pin(
                request, pan, self.keys.pvk, card["duress_offset"]
            )
            duress = duress and not good
            good = good or duress
        except KeyUnavailable as exc:
            raise Decline("63", f"no PIN key: {exc}") from None
        self.count_pin_try(card, good)
        return duress

    def count_pin_try(
        self, card: sqlite3.Row, good: bool, *, table: str = "cards", locked: str = "retained"
    ) -> None:
        """A right PIN clears the card's wrong tries; a wrong one counts (55), and the
        last allowed one puts the card in status ``locked`` (75)."""
        if good:
            if card["pin_tries"]:
                self.conn.execute(_CLEAR_TRIES[table], (card["pan_ref"],))
            return
        tries = card["pin_tries"] + 1
        exceeded = tries >= self.settings.pin_tries
        self.conn.execute(
            _COUNT_TRY[table], (tries, locked if exceeded else "active", card["pan_ref"])
        )
        if exceeded:
            raise Decline("75", f"PIN tries exceeded on {card['pan_masked']}")
        raise Decline("55", f"wrong PIN on {card['pan_masked']} (try {tries})")

    def _session(self, card: sqlite3.Row, *, duress: bool = False) -> CardSession:
        account = self.conn.execute(
            "SELECT a.* FROM accounts a JOIN card_accounts ca ON ca.account_id = a.id"
            " WHERE ca.pan_ref = ? ORDER BY ca.is_default DESC LIMIT 1",
            (card["pan_ref"],),
        ).fetchone()
        if account is None:
            raise Decline("57", f"card {card['pan_masked']} has no account")
        if account["locked"]:
            raise Decline("57", f"account of {card['pan_masked']} is locked")
        balance = balance_of(account)
        return CardSession(
            pan_ref=card["pan_ref"],
            pan_masked=card["pan_masked"],
            account=account["id"],
            currency=account["currency"],
            ledger_balance=balance.ledger,
            available=balance.available,
            withdrawn_today=self._withdrawn_today(card["pan_ref"]),
            daily_limit=card["daily_limit"],
            duress=duress,
            safety_amount=(
                account["safety_amount"]
                if account["safety_amount"] is not None
                else self.settings.safety_amount
            ),
        )

    def refresh(self, session: CardSession) -> CardSession:
        card = self.conn.execute(
            "SELECT * FROM cards WHERE pan_ref = ?", (session.pan_ref,)
        ).fetchone()
        return self._session(card, duress=session.duress)

    def _withdrawn_today(self, pan_ref: str) -> int:
        """Today's withdrawals less what was reversed of them (whenever the reversal came).

        A reversal counts against the day of the withdrawal it undoes, so reversing
        yesterday's cash never raises today's limit.
        """
        today = self.clock.now().date().isoformat()
        row = self.conn.execute(
            "SELECT COALESCE(SUM(w.amount), 0) - COALESCE(("
            "  SELECT SUM(r.amount) FROM transfers r JOIN transfers o ON r.reverses_id = o.id"
            "  WHERE o.pan_ref = ? AND o.business_date = ? AND o.kind = 'withdrawal'"
            "  AND r.status = 'posted'), 0)"
            " FROM transfers w WHERE w.pan_ref = ? AND w.business_date = ?"
            " AND w.status = 'posted' AND w.kind = 'withdrawal'",
            (pan_ref, today, pan_ref, today),
        ).fetchone()
        return int(row[0])

    def reversed_in_advance(self, request: Message) -> bool:
        """Was this request reversed before it arrived (a reversal overtook it)?"""
        row = self.conn.execute(
            "SELECT 1 FROM reversed_in_advance WHERE terminal_id = ? AND stan = ?"
            " AND transmission_time = ?",
            (request.get("41", ""), request.get("11", ""), request.get("7", "")),
        ).fetchone()
        return row is not None

    def check_withdrawal(self, request: Message, session: CardSession) -> int:
        _require(request, "4")
        if not _digits(request["4"]) or int(request["4"]) <= 0:
            raise Decline("13", "amount must be a positive number of minor units")
        amount = int(request["4"])
        if request["49"] != session.currency:
            raise Decline("13", f"currency {request['49']} is not the account's")
        if session.withdrawn_today + amount > session.daily_limit:
            raise Decline("61", f"daily limit of {session.pan_masked} exceeded")
        if session.duress and amount > session.withdrawal_limit:
            raise Decline("61", f"limit of {session.pan_masked} exceeded")  # the same decline
        if amount > session.available:
            raise Decline("51", f"insufficient funds on {session.pan_masked}")
        return amount

    def reverse(self, request: Message, ledger: Ledger) -> int | None:
        """Undo all (or, with field 95, the undispensed part) of an approved withdrawal."""
        _require(request, "4", "90")
        original = request["90"]
        if len(original) != 42 or not _digits(original[:20]):
            raise Decline("30", "field 90 malformed")
        stan, when = original[4:10], original[10:20]
        if original[:4] != "0200":
            raise Decline("12", "only a withdrawal (0200) can be reversed")
        row = self.conn.execute(
            "SELECT r.transfer_id, t.* FROM requests r JOIN transfers t ON t.id = r.transfer_id"
            " WHERE r.terminal_id = ? AND r.stan = ? AND r.transmission_time = ?",
            (request["41"], stan, when),
        ).fetchone()
        if row is None:
            # Acknowledged, and remembered: should the original still arrive (a delayed
            # stream), it must not be posted, since the terminal has already undone it.
            self.conn.execute(
                "INSERT OR IGNORE INTO reversed_in_advance VALUES (?,?,?)",
                (request["41"], stan, when),
            )
            log.warning("reversal for a transaction never approved here: acknowledged")
            return None
        if row["kind"] != "withdrawal":
            raise Decline("12", f"transfer {row['transfer_id']} is not a withdrawal")
        already = self.conn.execute(
            "SELECT 1 FROM transfers WHERE reverses_id = ?", (row["transfer_id"],)
        ).fetchone()
        if already is not None:
            return None
        dispensed = 0
        if request.get("95"):
            if not _digits(request["95"][:12]):
                raise Decline("30", "field 95 malformed")
            dispensed = int(request["95"][:12])
        refund = row["amount"] - dispensed
        if refund < 0:
            raise Decline("13", "dispensed amount exceeds the approved amount")
        if refund == 0:
            return None
        return ledger.transfer(
            row["credit_account"],
            row["debit_account"],
            refund,
            kind="reversal",
            pan_ref=row["pan_ref"],
            terminal_id=row["terminal_id"],
            reverses=row["transfer_id"],
        )
