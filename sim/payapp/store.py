"""The payment company's own database: app users, binding sessions, bindings, pushed
messages and the simulated SMS network, and every rule of a binding session.

A binding session is opened by the bank (signed request) and walked by one app user:
scan (or open a pushed message) -> confirm the masked account -> SMS code -> payment
password -> bound. Each step is one SQLite transaction; a refused step changes nothing
but its counted attempt. Secrets are kept only as hashes: the app's bearer token and
each binding's opaque token as SHA-256, the payment password as scrypt, the SMS code as
an HMAC under a per-database key. The bank never sends, and this file never holds, an
account number: only the bank's opaque ``account_ref`` and the masked account.

The bank is told the result through this database's durable outbox (the same
:mod:`sim.host.outbox` queue the bank uses), written in the step's own transaction: a
binding and the message that announces it commit together or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from atm_common.clock import Clock, SystemClock
from atm_common.files import private_database
from atm_common.masking import mask_phone
from sim.host.outbox import enqueue
from sim.host.outbox import ensure_schema as ensure_outbox
from sim.payapp.errors import Conflict, Forbidden, Gone, Invalid, NotFound, PayError

CODE_SECONDS = 300  # an SMS code lives five minutes
CODE_TRIES = 3  # wrong codes per session before it fails
PASSWORD_TRIES = 3  # wrong payment passwords per session before it fails
BANK = "bank"  # the outbox destination of every callback (one ordered queue)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
        password_salt TEXT NOT NULL, password_hash TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,                 -- the bank's binding session id
        digest TEXT NOT NULL,                -- of the bank's request: idempotency check
        address_token TEXT NOT NULL UNIQUE,  -- the binding address's secret part
        handle TEXT UNIQUE,                  -- the claiming app's handle for later steps
        path TEXT NOT NULL, account_ref TEXT NOT NULL, masked_account TEXT NOT NULL,
        holder TEXT NOT NULL, phone TEXT NOT NULL, callback_url TEXT NOT NULL,
        push_user TEXT, claimed_by TEXT,
        status TEXT NOT NULL,                -- open claimed code_sent verified bound failed
        code_hash TEXT, code_expires REAL, code_tries INTEGER NOT NULL DEFAULT 0,
        password_tries INTEGER NOT NULL DEFAULT 0, reason TEXT,
        expires_at REAL NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS bindings (
        id TEXT PRIMARY KEY, session_id TEXT NOT NULL UNIQUE, app_user TEXT NOT NULL,
        account_ref TEXT NOT NULL, masked_account TEXT NOT NULL, token_hash TEXT NOT NULL,
        callback_url TEXT NOT NULL,
        status TEXT NOT NULL,                -- pending (bank not yet told) active refused revoked
        revoked_by TEXT, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY, app_user TEXT NOT NULL, session_id TEXT NOT NULL,
        text TEXT NOT NULL, address TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sms (
        id INTEGER PRIMARY KEY, phone TEXT NOT NULL, text TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def password_hash(password: str, salt: str) -> str:
    return hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1).hex()


class PayStore:
    """The payment server's state on one SQLite file; every method is one transaction
    under a lock (uvicorn's worker threads and the outbox thread share it)."""

    def __init__(self, path: str | Path, base_url: str = "", clock: Clock | None = None) -> None:
        private_database(path)
        self.path = Path(path)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.clock = clock or SystemClock()
        self.base_url = base_url  # where addresses point (set once the server listens)
        self._lock = threading.Lock()
        with self.tx():
            for statement in SCHEMA:
                self.conn.execute(statement)
            ensure_outbox(self.conn)
            self.conn.execute(
                "INSERT INTO secrets VALUES ('code_key', ?) ON CONFLICT (name) DO NOTHING",
                (secrets.token_hex(32),),
            )
        row = self.conn.execute("SELECT value FROM secrets WHERE name = 'code_key'").fetchone()
        self._code_key = bytes.fromhex(row[0])

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction. A refusal (:class:`PayError`) commits what was written before
        it, which is only ever the closing of an expired session or code (to report it);
        every other refusal is raised before anything is written."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except PayError:
                self.conn.execute("COMMIT")
                raise
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def now(self) -> float:
        return self.clock.now().timestamp()

    def _iso(self) -> str:
        return self.clock.now().isoformat()

    # -- app users ------------------------------------------------------------------------

    def register(self, user: str, password: str) -> str:
        """A new app user with a payment password; returns the app's bearer token (once)."""
        token, salt = secrets.token_urlsafe(32), secrets.token_hex(16)
        with self.tx() as c:
            if c.execute("SELECT 1 FROM users WHERE id = ?", (user,)).fetchone():
                raise Conflict(f"app user {user} exists")
            c.execute(
                "INSERT INTO users VALUES (?,?,?,?,?)",
                (user, sha256(token), salt, password_hash(password, salt), self._iso()),
            )
        return token

    def user_by_token(self, token: str) -> str | None:
        row = self.conn.execute(
            "SELECT id FROM users WHERE token_hash = ?", (sha256(token),)
        ).fetchone()
        return None if row is None else str(row["id"])

    # -- the bank's side ------------------------------------------------------------------

    def address(self, token: str) -> str:
        return f"{self.base_url}/bind/{token}"

    def open_session(self, request: dict[str, Any]) -> dict[str, Any]:
        """The bank asks for a binding address (or a pushed message). Idempotent by the
        bank's session id: the same request gets the same address; other content is 409."""
        digest = sha256(json.dumps(request, sort_keys=True))
        with self.tx() as c:
            row = c.execute("SELECT * FROM sessions WHERE id = ?", (request["session_id"],))
            found = row.fetchone()
            if found is not None:
                if found["digest"] != digest:
                    raise Conflict("another request already used this session id")
                return self._opened(found)
            if request["expires_at"] <= self.now():
                raise Gone("the session expired before it reached the payment server")
            push_user = request.get("app_user")
            if request["path"] == "push" and (
                not push_user
                or not c.execute("SELECT 1 FROM users WHERE id = ?", (push_user,)).fetchone()
            ):
                raise NotFound("no such app user to push to", "app_user")
            token = secrets.token_urlsafe(32)
            c.execute(
                "INSERT INTO sessions (id, digest, address_token, path, account_ref,"
                " masked_account, holder, phone, callback_url, push_user, status, expires_at,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,'open',?,?)",
                (
                    request["session_id"],
                    digest,
                    token,
                    request["path"],
                    request["account_ref"],
                    request["masked_account"],
                    request["holder"],
                    request["phone"],
                    request["callback_url"],
                    push_user,
                    request["expires_at"],
                    self._iso(),
                ),
            )
            if request["path"] == "push":
                c.execute(
                    "INSERT INTO messages (app_user, session_id, text, address, created_at)"
                    " VALUES (?,?,?,?,?)",
                    (
                        push_user,
                        request["session_id"],
                        f"Your bank invites you to bind account {request['masked_account']}",
                        self.address(token),
                        self._iso(),
                    ),
                )
            found = c.execute(
                "SELECT * FROM sessions WHERE id = ?", (request["session_id"],)
            ).fetchone()
        return self._opened(found)

    def _opened(self, row: sqlite3.Row) -> dict[str, Any]:
        return {"address": self.address(row["address_token"]), "expires_at": row["expires_at"]}

    def revoke_by_bank(self, binding_id: str) -> dict[str, Any]:
        """The bank revoked a binding: idempotent; the app sees it revoked."""
        with self.tx() as c:
            row = c.execute("SELECT * FROM bindings WHERE id = ?", (binding_id,)).fetchone()
            if row is None:
                raise NotFound("no such binding")
            if row["status"] != "revoked":
                c.execute(
                    "UPDATE bindings SET status = 'revoked', revoked_by = 'bank' WHERE id = ?",
                    (binding_id,),
                )
        return {"binding_id": binding_id, "status": "revoked"}

    def bindings(self, app_user: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM bindings", tuple[str, ...]()
        if app_user is not None:
            query, args = query + " WHERE app_user = ?", (app_user,)
        rows = self.conn.execute(query + " ORDER BY created_at, id", args).fetchall()
        return [
            {
                "binding_id": r["id"],
                "session_id": r["session_id"],
                "app_user": r["app_user"],
                "account": r["masked_account"],
                "status": r["status"],
                "revoked_by": r["revoked_by"],
            }
            for r in rows
        ]

    # -- the app's side -------------------------------------------------------------------

    def _fail(self, c: sqlite3.Connection, row: sqlite3.Row, reason: str) -> None:
        """Close a session for good and tell the bank (same transaction)."""
        c.execute(
            "UPDATE sessions SET status = 'failed', reason = ?, code_hash = NULL WHERE id = ?",
            (reason, row["id"]),
        )
        self._callback(c, row["callback_url"], "failed", session_id=row["id"], reason=reason)

    def _callback(self, c: sqlite3.Connection, url: str, kind: str, **fields: Any) -> None:
        enqueue(c, "binding", {"type": kind, "callback_url": url, **fields}, BANK, clock=self.clock)

    def scan(self, user: str, address: str) -> dict[str, Any]:
        """The app scanned a binding address (or opened a pushed message). The first app
        user to scan it owns it; a repeat scan by that user answers the same again."""
        prefix = f"{self.base_url}/bind/"
        token = address[len(prefix) :] if address.startswith(prefix) else ""
        if not (32 <= len(token) <= 64) or not token.replace("-", "").replace("_", "").isalnum():
            raise Invalid("not a binding address of this payment server", "address")
        with self.tx() as c:
            row = c.execute("SELECT * FROM sessions WHERE address_token = ?", (token,)).fetchone()
            if row is None:
                raise NotFound("unknown binding address", "address")
            if row["claimed_by"] is not None and row["claimed_by"] != user:
                raise Conflict("this binding address was already used by another app user")
            if row["push_user"] is not None and row["push_user"] != user:
                raise Forbidden("this binding message was sent to another app user")
            self._live(c, row)
            handle = row["handle"]
            if row["claimed_by"] is None:
                if row["status"] != "open":
                    raise Conflict(f"this binding session is {row['status']}")
                handle = secrets.token_urlsafe(24)
                c.execute(
                    "UPDATE sessions SET claimed_by = ?, handle = ?, status = 'claimed'"
                    " WHERE id = ?",
                    (user, handle, row["id"]),
                )
        return {
            "session": handle,
            "account": row["masked_account"],
            "holder": row["holder"],
            "expires_at": row["expires_at"],
        }

    def _live(self, c: sqlite3.Connection, row: sqlite3.Row) -> None:
        """Refuse a closed or expired session (an expired one is failed and reported)."""
        if row["status"] in ("failed", "bound"):
            raise Gone(f"this binding session is {row['status']}")
        if row["expires_at"] <= self.now():
            self._fail(c, row, "expired")
            raise Gone("this binding address expired")

    def _claimed(self, c: sqlite3.Connection, user: str, handle: str, *states: str) -> sqlite3.Row:
        row: sqlite3.Row | None = c.execute(
            "SELECT * FROM sessions WHERE handle = ?", (handle,)
        ).fetchone()
        if row is None or row["claimed_by"] != user:
            raise NotFound("no such binding session for this app user", "session")
        self._live(c, row)
        if row["status"] not in states:
            raise Conflict(f"this binding session is {row['status']}: not the step now")
        return row

    def confirm(self, user: str, handle: str) -> dict[str, Any]:
        """The user confirmed the account: a new SMS code to the phone the bank holds."""
        code = f"{secrets.randbelow(10**6):06d}"
        with self.tx() as c:
            row = self._claimed(c, user, handle, "claimed", "code_sent")
            c.execute(
                "UPDATE sessions SET status = 'code_sent', code_hash = ?, code_expires = ?"
                " WHERE id = ?",
                (self._code_hash(row["id"], code), self.now() + CODE_SECONDS, row["id"]),
            )
            c.execute(
                "INSERT INTO sms (phone, text, created_at) VALUES (?,?,?)",
                (
                    row["phone"],
                    f"PayApp: {code} is your code to bind {row['masked_account']}."
                    f" Valid {CODE_SECONDS // 60} minutes. Never share it.",
                    self._iso(),
                ),
            )
        return {"sent_to": mask_phone(row["phone"]), "valid_seconds": CODE_SECONDS}

    def _code_hash(self, session_id: str, code: str) -> str:
        return hmac.new(self._code_key, f"{session_id}:{code}".encode(), "sha256").hexdigest()

    def check_code(self, user: str, handle: str, code: str) -> dict[str, Any]:
        """A wrong code counts; the third fails the session. A right code is used up."""
        with self.tx() as c:
            row = self._claimed(c, user, handle, "code_sent")
            if row["code_hash"] is None or (row["code_expires"] or 0) <= self.now():
                c.execute("UPDATE sessions SET code_hash = NULL WHERE id = ?", (row["id"],))
                raise Gone("the SMS code expired: confirm again for a new one")
            if not hmac.compare_digest(row["code_hash"], self._code_hash(row["id"], code)):
                tries = row["code_tries"] + 1
                c.execute("UPDATE sessions SET code_tries = ? WHERE id = ?", (tries, row["id"]))
                if tries >= CODE_TRIES:
                    self._fail(c, row, "too many wrong SMS codes")
                    return {"status": "failed", "tries_left": 0}
                return {"status": "wrong_code", "tries_left": CODE_TRIES - tries}
            c.execute(
                "UPDATE sessions SET status = 'verified', code_hash = NULL WHERE id = ?",
                (row["id"],),
            )
        return {"status": "verified", "tries_left": CODE_TRIES - row["code_tries"]}

    def check_password(self, user: str, handle: str, password: str) -> dict[str, Any]:
        """The payment password binds; the binding is ``pending`` until the bank has it."""
        with self.tx() as c:
            row = self._claimed(c, user, handle, "verified")
            who = c.execute("SELECT * FROM users WHERE id = ?", (user,)).fetchone()
            given = password_hash(password, who["password_salt"])
            if not hmac.compare_digest(given, who["password_hash"]):
                tries = row["password_tries"] + 1
                c.execute("UPDATE sessions SET password_tries = ? WHERE id = ?", (tries, row["id"]))
                if tries >= PASSWORD_TRIES:
                    self._fail(c, row, "too many wrong payment passwords")
                    return {"status": "failed", "tries_left": 0}
                return {"status": "wrong_password", "tries_left": PASSWORD_TRIES - tries}
            binding_id, token = "B" + secrets.token_hex(8), secrets.token_urlsafe(32)
            c.execute(
                "INSERT INTO bindings VALUES (?,?,?,?,?,?,?,'pending',NULL,?)",
                (
                    binding_id,
                    row["id"],
                    user,
                    row["account_ref"],
                    row["masked_account"],
                    sha256(token),
                    row["callback_url"],
                    self._iso(),
                ),
            )
            c.execute("UPDATE sessions SET status = 'bound' WHERE id = ?", (row["id"],))
            self._callback(
                c,
                row["callback_url"],
                "bound",
                session_id=row["id"],
                binding_id=binding_id,
                app_user=user,
            )
        return {
            "status": "pending",
            "binding_id": binding_id,
            "binding_token": token,
            "account": row["masked_account"],
        }

    def messages(self, user: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, text, address, created_at FROM messages WHERE app_user = ? ORDER BY id",
            (user,),
        ).fetchall()
        return [dict(r) for r in rows]

    def binding_by_token(self, user: str, token: str) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT * FROM bindings WHERE token_hash = ? AND app_user = ?", (sha256(token), user)
        ).fetchone()
        if row is None:
            raise NotFound("no binding of this app user has that token", "binding_token")
        return {"binding_id": row["id"], "account": row["masked_account"], "status": row["status"]}

    def revoke_by_app(self, user: str, token: str) -> dict[str, Any]:
        """The app user unbinds: revoked here, and the bank is told (same transaction)."""
        with self.tx() as c:
            row = c.execute(
                "SELECT * FROM bindings WHERE token_hash = ? AND app_user = ?",
                (sha256(token), user),
            ).fetchone()
            if row is None:
                raise NotFound("no binding of this app user has that token", "binding_token")
            if row["status"] != "revoked":
                c.execute(
                    "UPDATE bindings SET status = 'revoked', revoked_by = 'app' WHERE id = ?",
                    (row["id"],),
                )
            if row["status"] in ("active", "pending"):  # the bank has it, or soon will
                self._callback(c, row["callback_url"], "revoked", binding_id=row["id"])
        return {"binding_id": row["id"], "status": "revoked"}

    def settle(self, binding_id: str, accepted: bool) -> None:
        """The bank answered the ``bound`` callback: active, or refused (never both)."""
        with self.tx() as c:
            c.execute(
                "UPDATE bindings SET status = ? WHERE id = ? AND status = 'pending'",
                ("active" if accepted else "refused", binding_id),
            )

    def sms_inbox(self, phone: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, text, created_at FROM sms WHERE phone = ? ORDER BY id", (phone,)
        ).fetchall()
        return [dict(r) for r in rows]
