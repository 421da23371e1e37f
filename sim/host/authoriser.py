"""The host's business rules: one request in, one response out, one SQLite transaction.

Every request is idempotent by (terminal id, STAN, transmission time): a repeat of the
same request gets the stored response again and is never posted twice; the same key with
different content is a replay and gets 94. Declines are decided by :mod:`sim.host.rules`.

Network messages (0800: sign-on, sign-off, echo, key exchange) are not stored that way,
yet each of them changes something: a key exchange issues new working keys, and any of
them tells routing the terminal is alive. Their MAC covers field 7, so the host makes
them fresh: field 7 must be within ``max_clock_skew`` of the host's clock (63 otherwise),
and a (terminal, STAN, field 7, field 70) already accepted is refused (94). A refused
network message changes nothing, liveness included, so a recorded sign-on cannot keep a
dead ATM on the customers' routing list, nor a recorded key exchange knock a live one off.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import secrets
import sqlite3
from collections.abc import Callable, Mapping

from atm_common.clock import Clock
from atm_common.errors import AtmError
from host_link.amounts import AmountType, encode_amounts
from host_link.codec import Message, describe
from host_link.codes import Mti, NetworkCode, ProcessingCode, response_mti
from host_link.evidence import encode_sealed, request_plaintext
from sim.host.binding import iso as bind_iso
from sim.host.binding.desk import BindingDesk
from sim.host.cardless.iso import CardlessDesk, IsoOutcome
from sim.host.duress import AlarmDesk
from sim.host.enterprise.iso import EnterpriseGate
from sim.host.evidence import EvidenceDesk
from sim.host.joint.iso import JointDecline, JointDesk
from sim.host.keys import KeyStore
from sim.host.ledger import Ledger, transaction
from sim.host.rules import CardSession, Decline, RuleBook
from sim.host.settings import HostKeys, HostSettings
from sim.host.supervision.cards import SupervisorCards
from sim.host.supervision.desk import CODES as SUPERVISION_CODES
from sim.host.supervision.desk import SupervisionDesk

log = logging.getLogger(__name__)

EVIDENCE_SNAPSHOTS = 2  # asked of the terminal when a duress incident opens
DEFAULT_CLOCK_SKEW = 300.0  # seconds field 7 of an 0800 may be off the host's clock

# Echoed from request to response; never 2, 14, 35, 52 (no card data on the way back).
ECHOED = ("3", "4", "7", "11", "12", "13", "32", "41", "42", "49", "53", "90")
Handler = Callable[[Message], tuple[Message, int | None]]


class Authoriser:
    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: HostKeys,
        settings: HostSettings,
        clock: Clock,
        *,
        max_clock_skew: float = DEFAULT_CLOCK_SKEW,
    ) -> None:
        """``max_clock_skew``: the freshness window of network messages, in seconds; 0
        turns the clock comparison off (replays are still refused), for runs whose
        terminal lives on simulated time while the host reads the real clock (the soak)."""
        self.conn = conn
        self.clock = clock
        self.max_clock_skew = max_clock_skew
        self.settings = settings
        self.ledger = Ledger(conn, clock)
        self.key_store = KeyStore(
            conn, lmk=keys.lmk, bdk_aes=keys.bdk_aes, terminals=keys.terminals
        )
        self.rules = RuleBook(conn, keys, self.key_store, settings, clock)
        self.alarms = AlarmDesk(conn, clock)
        self.evidence = EvidenceDesk(conn, clock, self.key_store)
        self._random = secrets.SystemRandom()
        self.cardless = CardlessDesk(conn, keys, self.key_store, settings, clock, self.ledger)
        self.enterprise = EnterpriseGate(conn, clock)  # corporate cards: role, department
        self.joint = JointDesk(conn, keys, self.key_store, settings, clock)
        self.cardless.on_withdrawn = self.joint.cardless_collected
        self.binding = BindingDesk(conn, clock, keys.pan_key)  # payment-app binding
        self.supervision = SupervisionDesk(
            conn, clock, self.ledger, settings.currency, SupervisorCards(self.rules)
        )
        self.peer_ip = ""  # set by the server for the request being handled
        (count,) = conn.execute("SELECT COUNT(*) FROM requests").fetchone()
        self._sequence = itertools.count(count + 1)
        self._handlers: dict[str, Handler] = {
            Mti.AUTH_REQUEST: self._authorise,
            Mti.FINANCIAL_REQUEST: self._withdraw,
            Mti.REVERSAL_REQUEST: self._reverse,
            Mti.REVERSAL_REQUEST_REPEAT: self._reverse,
            Mti.REVERSAL_ADVICE: self._reverse,
            Mti.REVERSAL_ADVICE_REPEAT: self._reverse,
            Mti.ADMIN_ADVICE: self._evidence,
            Mti.ADMIN_ADVICE_REPEAT: self._evidence,
        }

    def handle(self, request: Message, peer_ip: str = "") -> Message | None:
        """The response to ``request``, or None for a message that needs none.

        Every answer to a card session's 0100/0200 carries the sealed field 63
        (:mod:`host_link.evidence`), whatever its code: the handlers seal theirs inside
        the transaction (so a repeat gets the same bytes), the refusals get ``EV=0`` here.
        """
        response = self._handle(request, peer_ip)
        if response is not None and "63" not in response and _card_session(request):
            self._private(request, response)
        return response

    def share(self, index: int, count: int) -> None:
        """This is host process ``index`` of ``count`` on one database (``--workers``):
        reference numbers are drawn from this process's own residue class, so two
        processes never hand out the same one, and working keys are read fresh."""
        (stored,) = self.conn.execute("SELECT COUNT(*) FROM requests").fetchone()
        self._sequence = itertools.count(stored * count + index + 1, count)
        self.key_store.shared = True

    def refuse(self, request: Message, code: str) -> Message:
        """``code`` in answer to ``request``, nothing done (a failed group commit's 96)."""
        response = self._respond(request, code)
        if _card_session(request):
            self._private(request, response)
        return response

    def _handle(self, request: Message, peer_ip: str) -> Message | None:
        self.peer_ip = peer_ip
        mti = request.get("t", "")
        if mti == Mti.NETWORK_REQUEST:
            try:
                refused = self._stale_or_replayed(request)
            except sqlite3.Error as exc:
                log.error("cannot check network message %s: %s", describe(request), exc)
                refused = "96"
            if refused:
                return self._respond(request, refused, extra={"70": request.get("70", "")})
            network = self._network(request)
            try:
                self._heard_from(request)
            except sqlite3.Error as exc:
                log.error("cannot record terminal status: %s", exc)
            return network
        if mti[2:3] not in ("0", "2") or mti[3:4] not in ("0", "1"):
            log.warning("ignoring non-request message %s", describe(request))
            return None
        key = (request.get("41", ""), request.get("11", ""), request.get("7", ""))
        if not all(key) or not request["11"].isdigit() or not request["7"].isdigit():
            return self._respond(request, "30")
        handler = self._handlers.get(mti)
        if handler is None:
            return self._respond(request, "12")
        digest = _digest(request)
        try:
            with transaction(self.conn):
                stored = self.conn.execute(
                    "SELECT digest, response FROM requests"
                    " WHERE terminal_id = ? AND stan = ? AND transmission_time = ?",
                    key,
                ).fetchone()
                if stored is not None:
                    if stored["digest"] == digest:
                        log.info("repeat of %s: original response sent again", key)
                        return dict(json.loads(stored["response"]))
                    log.warning("replayed key %s with different content: 94", key)
                    return self._respond(request, "94")
                response, transfer_id = handler(request)
                self._heard_from(request)
                self.conn.execute(
                    "INSERT INTO requests VALUES (?,?,?,?,?,?,?,?)",
                    (
                        *key,
                        mti,
                        digest,
                        json.dumps(response),
                        transfer_id,
                        self.clock.now().isoformat(),
                    ),
                )
            return response
        except (sqlite3.Error, AtmError) as exc:
            log.error("cannot process %s: %s", describe(request), exc)
            return self._respond(request, "96")

    # -- handlers: each returns (response, transfer id or None) inside the transaction --

    def _authorise(self, request: Message) -> tuple[Message, int | None]:
        if request.get("3") == ProcessingCode.CARDLESS_INQUIRY:
            return self._cardless(request, self.cardless.handle_inquiry(request))
        if request.get("3") == ProcessingCode.PAYAPP_BIND:
            return self._bind(request)
        if request.get("3") != ProcessingCode.BALANCE_INQUIRY:
            return self._respond(request, "12"), None
        try:
            session = self._verify(request)
            session, corporate = self.enterprise.apply(request, session, "balance")
        except Decline as decline:
            return self._private(request, self._declined(request, decline)), None
        response = self._approve(request, session) | corporate
        self.joint.finished(request, session.account, 0)
        if self._duress(request, session):
            # quietly ask the terminal for camera snapshots of the incident
            ref = self.alarms.opened_ref or ""
        elif self._random.random() < self.settings.evidence_sample:
            # a decoy: the same request in a normal session, so that asking (and the
            # uploads that follow) tells nobody on the wire which session was duress
            ref = self.evidence.issue_decoy(request.get("41", ""))
        else:
            return self._private(request, response), None
        return self._private(request, response, EVIDENCE_SNAPSHOTS, ref), None

    def _withdraw(self, request: Message) -> tuple[Message, int | None]:
        if request.get("3") == ProcessingCode.CARDLESS_WITHDRAWAL:
            return self._cardless(request, self.cardless.handle_withdrawal(request))
        if request.get("3") != ProcessingCode.WITHDRAWAL:
            return self._respond(request, "12"), None
        if self.rules.reversed_in_advance(request):
            return self._respond(request, "12"), None  # the terminal undid it already
        try:
            session = self._verify(request)
            self._duress(request, session)
            session, corporate = self.enterprise.apply(request, session, "withdraw")
            amount = self.rules.check_withdrawal(request, session)
        except Decline as decline:
            return self._private(request, self._declined(request, decline)), None
        transfer_id = self.ledger.transfer(
            session.account,
            f"GL-CASH-{request['41']}",
            amount,
            kind="withdrawal",
            pan_ref=session.pan_ref,
            terminal_id=request["41"],
        )
        self.joint.finished(request, session.account, amount)
        session = self.enterprise.rebind(request, self.rules.refresh(session))
        return self._private(request, self._approve(request, session) | corporate), transfer_id

    # -- joint accounts: sim/host/joint/iso.py decides; these are its hooks --

    def _verify(self, request: Message) -> CardSession:
        """Card and PIN as for any card, with the joint-account gate around them."""
        self.joint.before_pin(request)
        try:
            session = self.rules.verify_card_and_pin(request)
        except Decline as decline:
            self.joint.pin_failed(request, decline)
            raise
        self.joint.gate(request, session)
        return session

    def _declined(self, request: Message, decline: Decline) -> Message:
        extra = decline.fields if isinstance(decline, JointDecline) else None
        return self._respond(request, decline.code, extra=extra)

    def _bind(self, request: Message) -> tuple[Message, int | None]:
        """Payment-app binding (sim/host/binding/iso.py): card and PIN checked first."""
        try:
            session = self.rules.verify_card_and_pin(request)
        except Decline as decline:
            return self._private(request, self._respond(request, decline.code)), None
        if session.duress:  # no binding under duress: the alarm, and a plain refusal
            self._duress(request, session)
            return self._private(request, self._respond(request, "05")), None
        (person,) = self.conn.execute(
            "SELECT person_id FROM cards WHERE pan_ref = ?", (session.pan_ref,)
        ).fetchone()
        code, field48 = bind_iso.handle(self.binding, request, person, session.account)
        extra = {"48": field48} if field48 else {}
        return self._private(request, self._respond(request, code, extra)), None

    def _duress(self, request: Message, session: CardSession) -> bool:
        """Raise (or follow up) the silent alarm; True when this request opened it."""
        if session.duress:
            self.alarms.raise_alarm(
                request,
                pan_ref=session.pan_ref,
                masked_pan=session.pan_masked,
                account=session.account,
                peer_ip=self.peer_ip,
            )
        return session.duress and self.alarms.opened is not None

    def _evidence(self, request: Message) -> tuple[Message, int | None]:
        return self._respond(request, self.evidence.receive(request)), None

    def _reverse(self, request: Message) -> tuple[Message, int | None]:
        reservation = self.cardless.original(request)
        if reservation is not None:
            return self._cardless(request, self.cardless.reverse(request, reservation))
        if self.joint.cancel_by_reversal(request):  # a joint request still waiting: cancelled
            return self._respond(request, "00"), None
        try:
            transfer_id = self.rules.reverse(request, self.ledger)
        except Decline as decline:
            return self._respond(request, decline.code), None
        self.joint.after_reversal(transfer_id)
        return self._respond(request, "00"), transfer_id

    # -- cardless withdrawal: sim/host/cardless/iso.py decides, this only builds the response

    def _cardless(self, request: Message, outcome: IsoOutcome) -> tuple[Message, int | None]:
        extra = dict(outcome.fields)
        if outcome.code == "00" and request.get("t") in (Mti.AUTH_REQUEST, Mti.FINANCIAL_REQUEST):
            seq = next(self._sequence)
            extra["37"] = f"{self.clock.now():%y%j%H}{seq % 100_000:05d}"
            extra["38"] = f"{seq % 1_000_000:06d}"
        return self._respond(request, outcome.code, extra=extra), outcome.transfer_id

    def _heard_from(self, request: Message) -> None:
        """Terminal status, last contact and cash estimate, for routing customers to ATMs
        (cardless). Any message means the terminal is up; a sign-off says it is not."""
        signed_off = (
            request.get("t") == Mti.NETWORK_REQUEST and request.get("70") == NetworkCode.SIGN_OFF
        )
        self.conn.execute(
            "UPDATE terminals SET status = ?, last_seen = ?, cash_on_hand = (SELECT"
            " debits_posted - credits_posted FROM accounts WHERE id = terminals.cash_account)"
            " WHERE id = ?",
            (
                "signed_off" if signed_off else "in_service",
                self.clock.now().isoformat(),
                request.get("41", ""),
            ),
        )

    def _stale_or_replayed(self, request: Message) -> str:
        """The response code refusing a network message, or "" when it is fresh and new.

        30: no usable field 7 or STAN; 63: field 7 outside the window (a recording, or a
        terminal whose clock is wrong: it must be set right to sign on); 94: this very
        message was accepted before. The key includes field 70, so a terminal's sign-off
        and sign-on are two messages even if stamped in the same second.
        """
        terminal, stan = request.get("41", ""), request.get("11", "")
        stamp, code = request.get("7", ""), request.get("70", "")
        now = self.clock.now()
        sent = _transmission_time(stamp, now)
        if sent is None or not (stan.isascii() and stan.isdigit()):
            log.warning("network message from %s without a usable field 7 or 11: 30", terminal)
            return "30"
        skew = abs((sent - now).total_seconds())
        if self.max_clock_skew and skew > self.max_clock_skew:
            log.warning(
                "stale 0800/%s from %s: field 7 is %.0f s off the host clock (window %.0f s): 63",
                code,
                terminal,
                skew,
                self.max_clock_skew,
            )
            return "63"
        received = now.timestamp()
        if self.max_clock_skew:
            # a row matters while a replay of it could still look fresh: accepted with
            # field 7 up to one window ahead, a replay stays fresh one window after that
            # (with no window every row is kept: 0800s are a few per terminal and day)
            self.conn.execute(
                "DELETE FROM network_requests WHERE received_at < ?",
                (received - 2 * self.max_clock_skew,),
            )
        inserted = self.conn.execute(
            "INSERT INTO network_requests VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
            (terminal, stan, stamp, code, received),
        ).rowcount
        if not inserted:
            log.warning(
                "replayed 0800/%s from %s (STAN %s, field 7 %s): 94", code, terminal, stan, stamp
            )
            return "94"
        return ""

    def _network(self, request: Message) -> Message:
        code = request.get("70", "")
        if code == NetworkCode.KEY_EXCHANGE:
            return self._key_exchange(request)
        if code in SUPERVISION_CODES:  # status, supervisor mode, cash exchange
            return self._respond(request, *self.supervision.handle(request))
        known = {c.value for c in NetworkCode}
        return self._respond(request, "00" if code in known else "12", extra={"70": code})

    def _key_exchange(self, request: Message) -> Message:
        """New working keys for a TDES terminal, under its TMK, with check values (field 63)."""
        terminal = request.get("41", "")
        try:
            keys = self.key_store.issue_working_keys(terminal, self.clock.now().isoformat())
        except AtmError as exc:
            log.error("key exchange refused for %s: %s", terminal, exc)
            return self._respond(request, "12", extra={"70": request.get("70", "")})
        log.info(
            "working keys issued to %s (TPK KCV %s, TAK KCV %s)",
            terminal,
            keys["TPKKCV"],
            keys["TAKKCV"],
        )
        payload = ";".join(f"{k}={v}" for k, v in keys.items())
        return self._respond(request, "00", extra={"70": request["70"], "63": payload})

    # -- responses --

    def _approve(self, request: Message, session: CardSession) -> Message:
        seq = next(self._sequence)
        amounts = encode_amounts(
            {
                AmountType.LEDGER_BALANCE: session.ledger_balance,
                AmountType.AVAILABLE_BALANCE: session.available,
                AmountType.WITHDRAWAL_LIMIT: session.withdrawal_limit,
            },
            session.currency,
        )
        return self._respond(
            request,
            "00",
            extra={
                "37": f"{self.clock.now():%y%j%H}{seq % 100_000:05d}",
                "38": f"{seq % 1_000_000:06d}",
                "54": amounts,
            },
        )

    def _private(
        self, request: Mapping[str, str], response: Message, count: int = 0, ref: str = ""
    ) -> Message:
        """``response`` with its sealed field 63: ``count`` snapshots under ``ref``, or
        none; the same size either way (host_link.evidence). Without a key to seal it (which
        the MAC check makes unreachable) the field is left out and the reply goes unMACed."""
        try:
            sealed = self.key_store.encrypt_response_data(request, request_plaintext(count, ref))
        except AtmError as exc:
            log.error("cannot seal field 63 for %s: %s", request.get("41", ""), exc)
            return response
        response["63"] = encode_sealed(sealed)
        return response

    def _respond(
        self, request: Mapping[str, str], code: str, extra: Mapping[str, str] | None = None
    ) -> Message:
        try:
            mti = response_mti(request.get("t", ""))
        except ValueError:
            mti = "9999"
        response: Message = {"t": mti, "39": code}
        for field in ECHOED:
            if field in request:
                response[field] = request[field]
        response.update(extra or {})
        return response


def _transmission_time(field7: str, now: dt.datetime) -> dt.datetime | None:
    """Field 7 (``MMDDhhmmss``, UTC, no year) as the instant nearest to ``now``: the year
    is the one of last year, this year and next year that puts it closest, so a message
    sent seconds before midnight on 31 December is not a year old. None if malformed."""
    if len(field7) != 10 or not (field7.isascii() and field7.isdigit()):
        return None
    month, day, hour, minute, second = (int(field7[i : i + 2]) for i in range(0, 10, 2))
    candidates = []
    for year in (now.year - 1, now.year, now.year + 1):
        try:
            candidates.append(dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC))
        except ValueError:  # 29 February of a common year, or no such date at all
            continue
    if not candidates:
        return None
    return min(candidates, key=lambda when: abs(when - now))


def _card_session(request: Mapping[str, str]) -> bool:
    """A card session's 0100 or 0200 (not a cardless one, whose field 63 is its own)."""
    return request.get("t") in (Mti.AUTH_REQUEST, Mti.FINANCIAL_REQUEST) and request.get(
        "3"
    ) not in (ProcessingCode.CARDLESS_INQUIRY, ProcessingCode.CARDLESS_WITHDRAWAL)


def _digest(request: Mapping[str, str]) -> str:
    """Content hash. Not content: the last MTI digit (repeat flag, 0420 vs 0421) and the
    MAC (it covers the MTI, so a repeat's MAC differs; the MAC was checked already)."""
    canonical = {k: v for k, v in request.items() if k not in ("t", "64", "128")}
    canonical["t"] = request.get("t", "")[:3]
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
