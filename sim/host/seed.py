"""Load the host's world (keys, terminals, people, accounts, cards) from a TOML seed.

A seed may give a card's PIN in clear for test and demo data; it is turned into an
IBM 3624 offset here and never stored. Likewise a person's ``face_photo`` is turned into
a face template (for cardless withdrawal) and the photo is never stored. Every problem
names the file and the key. What it returns, the keys and the settings, is the plain data
of :mod:`sim.host.settings`.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

from atm_common.crypto.pinblock import ibm3624_offset
from atm_common.errors import AtmError, ConfigError
from atm_common.masking import mask_pan
from sim.host.cardless.faces import enrol_face
from sim.host.cardless.schema import ensure_schema
from sim.host.cardless.throttle import LOCKOUT_MAX
from sim.host.enterprise.seed import load_enterprise
from sim.host.joint.setup import joint_settings, load_joint
from sim.host.keys import AES_DUKPT, SECURITY_MODES, TDES, TerminalKeys
from sim.host.ledger import Ledger, transaction
from sim.host.settings import CardlessSettings, FeeRule, HostKeys, HostSettings
from sim.host.supervision.cards import load_supervisor_cards
from sim.host.supervision.schema import ensure_schema as ensure_supervision

log = logging.getLogger(__name__)

OPENING_ACCOUNT = "GL-OPENING"


class _Reader:
    """Typed access to a TOML table that names file and key in every error."""

    def __init__(self, source: str, table: dict[str, Any], prefix: str = "") -> None:
        self.source, self.table, self.prefix = source, table, prefix

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        where = f"{self.prefix}{key}"
        if key not in self.table:
            if default is ...:
                raise ConfigError(self.source, where, "is required")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(self.source, where, f"must be {kind.__name__}, got {value!r}")
        return value

    def hexkey(self, key: str, sizes: tuple[int, ...] = (16, 24)) -> bytes:
        text = self.get(key, str)
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ConfigError(self.source, f"{self.prefix}{key}", "is not hexadecimal") from None
        if len(raw) not in sizes:
            raise ConfigError(self.source, f"{self.prefix}{key}", f"must be {sizes} bytes")
        return raw

    def items(self, key: str) -> list[_Reader]:
        rows = self.get(key, list, [])
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ConfigError(self.source, f"{key}[{i}]", "must be a table")
            out.append(_Reader(self.source, row, f"{key}[{i}]."))
        return out


def _terminal_keys(t: _Reader) -> TerminalKeys:
    tid = t.get("id", str)
    if len(tid) != 8:
        raise ConfigError(t.source, f"{t.prefix}id", "terminal id must be 8 characters")
    mode = t.get("security", str, TDES)
    if mode == TDES:
        return TerminalKeys(tid, mode, tmk=t.hexkey("tmk", (16,)))
    if mode == AES_DUKPT:
        return TerminalKeys(tid, mode, initial_key_id=t.hexkey("ik_id", (8,)))
    raise ConfigError(t.source, f"{t.prefix}security", f"must be one of {SECURITY_MODES}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None


def read_keys(path: Path) -> tuple[HostKeys, HostSettings]:
    """The keys and settings of the seed at ``path``, without touching any database (the
    host checks them, e.g. for public demo keys, before it creates its database file)."""
    return _keys_and_settings(_Reader(str(path), read_toml(path)))


def _share(table: _Reader, key: str, default: float) -> float:
    value = float(table.get(key, float, default))
    if not 0.0 <= value <= 1.0:
        raise ConfigError(table.source, f"{table.prefix}{key}", "must be between 0 and 1")
    return value


def _keys_and_settings(root: _Reader) -> tuple[HostKeys, HostSettings]:
    host = _Reader(root.source, root.get("host", dict), "host.")
    settings = HostSettings(
        currency=host.get("currency", str, "840"),
        pin_tries=host.get("pin_tries", int, 3),
        institution_id=host.get("institution_id", str, "100001"),
        safety_amount=host.get("safety_amount", int, 20_000),
        evidence_sample=_share(host, "evidence_sample", 0.2),
        cardless=_cardless_settings(root),
        joint=joint_settings(root.source, root.table),
        demo=host.get("demo", bool, False),
    )
    terminals = root.items("terminals")
    keys = HostKeys(
        pvk=host.hexkey("pvk"),
        pan_key=host.hexkey("pan_key", (16, 24, 32)),
        lmk=host.hexkey("lmk"),
        bdk_aes=host.hexkey("bdk_aes", (16,)) if "bdk_aes" in host.table else None,
        terminals={t.get("id", str): _terminal_keys(t) for t in terminals},
    )
    return keys, settings


def load_seed(
    conn: sqlite3.Connection, path: Path, ledger: Ledger
) -> tuple[HostKeys, HostSettings]:
    """Populate an empty database from ``path``; on a populated one, only read the keys."""
    root = _Reader(str(path), read_toml(path))
    keys, settings = _keys_and_settings(root)
    (populated,) = conn.execute("SELECT COUNT(*) FROM accounts").fetchone()
    if populated:
        return keys, settings
    faces = _face_templates(root, path)  # slow (face detection): before the write lock
    with transaction(conn):
        _populate(conn, root, keys, settings, ledger)
        load_joint(conn, root.source, root.table, keys, ledger.clock.now().isoformat())
        ensure_schema(conn)
        ensure_supervision(conn, settings.currency)
        load_supervisor_cards(conn, root.source, root.table.get("supervisor_cards"), keys)
        load_enterprise(conn, str(path), root.get("enterprise", dict, None), settings.currency)
        for person, (template, source) in faces.items():
            enrol_face(conn, person, template, source, ledger.clock.now().isoformat())
    return keys, settings


def _populate(
    conn: sqlite3.Connection, root: _Reader, keys: HostKeys, settings: HostSettings, ledger: Ledger
) -> None:
    ledger.open_account(OPENING_ACCOUNT, kind="gl", normal="debit", currency=settings.currency)
    seen: dict[str, set[str]] = {"terminals": set(), "persons": set(), "accounts": set()}
    for t in root.items("terminals"):
        tid = _unique(t, "id", seen["terminals"])
        cash = f"GL-CASH-{tid}"
        ledger.open_account(cash, kind="gl", normal="debit", currency=settings.currency)
        conn.execute(
            "INSERT INTO terminals (id, cash_account, site_name, site_lat, site_lon)"
            " VALUES (?,?,?,?,?)",
            (
                tid,
                cash,
                t.get("site", str, ""),
                t.get("lat", float, None),
                t.get("lon", float, None),
            ),
        )
        opening_cash = t.get("cash", int, 0)
        if opening_cash:
            ledger.transfer(cash, OPENING_ACCOUNT, opening_cash, kind="opening")
        conn.execute("UPDATE terminals SET cash_on_hand = ? WHERE id = ?", (opening_cash, tid))
    for p in root.items("persons"):
        conn.execute(
            "INSERT INTO persons (id, name, phone) VALUES (?,?,?)",
            (_unique(p, "id", seen["persons"]), p.get("name", str), p.get("phone", str, None)),
        )
    for a in root.items("accounts"):
        number = _unique(a, "number", seen["accounts"])
        ledger.open_account(
            number,
            kind="customer",
            normal="credit",
            currency=a.get("currency", str, settings.currency),
            safety_amount=a.get("safety_amount", int, None),
        )
        for owner in _known(a, "owners", seen["persons"]):
            conn.execute("INSERT INTO ownership VALUES (?, ?)", (owner, number))
        opening = a.get("balance", int, 0)
        if opening:
            ledger.transfer(OPENING_ACCOUNT, number, opening, kind="opening")
    pans: set[str] = set()
    for c in root.items("cards"):
        _insert_card(conn, c, keys, seen, pans)
    _check_fees(root, settings.cardless)


def _unique(r: _Reader, key: str, seen: set[str]) -> str:
    value: str = r.get(key, str)
    if value in seen:
        raise ConfigError(r.source, f"{r.prefix}{key}", f"{value!r} is repeated")
    seen.add(value)
    return value


def _known(r: _Reader, key: str, known: set[str]) -> list[str]:
    values = r.get(key, list)
    for value in values:
        if value not in known:
            raise ConfigError(
                r.source, f"{r.prefix}{key}", f"{value!r} is unknown (not defined in the seed)"
            )
    return list(values)


CARD_STATUSES = ("active", "retained", "blocked")


def _insert_card(
    conn: sqlite3.Connection, c: _Reader, keys: HostKeys, seen: dict[str, set[str]], pans: set[str]
) -> None:
    pan = c.get("pan", str)
    if not pan.isascii() or not pan.isdigit() or not 13 <= len(pan) <= 19:
        raise ConfigError(c.source, f"{c.prefix}pan", "must be 13-19 digits")
    if pan in pans:
        raise ConfigError(c.source, f"{c.prefix}pan", "is repeated")
    pans.add(pan)
    owner = c.get("owner", str)
    if owner not in seen["persons"]:
        raise ConfigError(
            c.source, f"{c.prefix}owner", f"{owner!r} is unknown (not defined in the seed)"
        )
    status = c.get("status", str, "active")
    if status not in CARD_STATUSES:
        raise ConfigError(c.source, f"{c.prefix}status", f"must be one of {CARD_STATUSES}")
    accounts = _known(c, "accounts", seen["accounts"])
    expiry = c.get("expiry", str)
    if len(expiry) != 4 or not expiry.isdigit() or not 1 <= int(expiry[2:]) <= 12:
        raise ConfigError(c.source, f"{c.prefix}expiry", "must be YYMM")
    if "pin" in c.table:
        pin = c.get("pin", str)
        if not pin.isdigit() or not 4 <= len(pin) <= 12:
            raise ConfigError(c.source, f"{c.prefix}pin", "must be 4-12 digits")
        offset = ibm3624_offset(pin, pan, keys.pvk)
    else:
        offset = c.get("pin_offset", str)
    duress = None
    if "duress_pin" in c.table:
        duress_pin = c.get("duress_pin", str)
        if not duress_pin.isdigit() or not 4 <= len(duress_pin) <= 12:
            raise ConfigError(c.source, f"{c.prefix}duress_pin", "must be 4-12 digits")
        if "pin" in c.table and duress_pin == c.get("pin", str):
            raise ConfigError(c.source, f"{c.prefix}duress_pin", "must differ from the PIN")
        duress = ibm3624_offset(duress_pin, pan, keys.pvk)
    elif "duress_pin_offset" in c.table:
        duress = c.get("duress_pin_offset", str)
    ref = keys.pan_ref(pan)
    conn.execute(
        "INSERT INTO cards (pan_ref, pan_masked, person_id, expiry, product, pin_offset,"
        " duress_offset, status, daily_limit) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            ref,
            mask_pan(pan),
            owner,
            expiry,
            c.get("product", str, "debit"),
            offset,
            duress,
            status,
            c.get("daily_limit", int, 100_000),
        ),
    )
    for i, account in enumerate(accounts):
        conn.execute(
            "INSERT INTO card_accounts (pan_ref, account_id, is_default) VALUES (?,?,?)",
            (ref, account, int(i == 0)),
        )


# -- cardless withdrawal: settings, fee table, enrolled faces ------------------------------

_CARDLESS_INTS = (
    "hold_minutes",
    "attempts",
    "request_minutes",
    "phone_attempts",
    "min_amount",
    "max_amount",
    "multiple",
    "verify_seconds",
    "lockout_failures",
)


def _cardless_settings(root: _Reader) -> CardlessSettings:
    """The top-level ``[cardless]`` table (top level, not under ``[host]``: tools copy
    ``[host]`` as flat scalars, see sim/scenarios/seedgen.py)."""
    table = _Reader(root.source, root.get("cardless", dict, {}), "cardless.")
    defaults = CardlessSettings()
    values: dict[str, int] = {}
    for key in _CARDLESS_INTS:
        value = table.get(key, int, getattr(defaults, key))
        if value < (0 if key == "min_amount" else 1):
            raise ConfigError(root.source, f"cardless.{key}", "must be positive")
        values[key] = value
    if values["lockout_failures"] > LOCKOUT_MAX:
        raise ConfigError(root.source, "cardless.lockout_failures", f"is above {LOCKOUT_MAX}")
    if values["min_amount"] > values["max_amount"]:
        raise ConfigError(root.source, "cardless.min_amount", "is above max_amount")
    tolerance = table.get("face_tolerance", float, defaults.face_tolerance)
    if not 0 < tolerance < 2:
        raise ConfigError(root.source, "cardless.face_tolerance", "must be between 0 and 2")
    fees_table = _Reader(root.source, table.get("fees", dict, {}), "cardless.fees.")
    fees = tuple((product, _fee_rule(fees_table, product)) for product in fees_table.table)
    return CardlessSettings(
        hold_minutes=values["hold_minutes"],
        attempts=values["attempts"],
        request_minutes=values["request_minutes"],
        phone_attempts=values["phone_attempts"],
        face_tolerance=tolerance,
        min_amount=values["min_amount"],
        max_amount=values["max_amount"],
        multiple=values["multiple"],
        verify_seconds=values["verify_seconds"],
        lockout_failures=values["lockout_failures"],
        fees=fees,
    )


def _fee_rule(fees: _Reader, product: str) -> FeeRule:
    """``product = 200`` (flat, minor units) or ``product = { flat = 100, bps = 50,
    min = 150, max = 1000 }`` (bps: basis points of the amount)."""
    where = f"{fees.prefix}{product}"
    value = fees.table[product]
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(fees.source, where, "a fee cannot be negative")
        return FeeRule(flat=value)
    if not isinstance(value, dict):
        raise ConfigError(
            fees.source, where, "must be minor units or a {flat, bps, min, max} table"
        )
    rule = _Reader(fees.source, value, where + ".")
    unknown = set(value) - {"flat", "bps", "min", "max"}
    if unknown:
        raise ConfigError(fees.source, f"{where}.{sorted(unknown)[0]}", "is not a fee key")
    flat, bps, minimum = (rule.get(k, int, 0) for k in ("flat", "bps", "min"))
    maximum = rule.get("max", int, None)
    if min(flat, bps, minimum) < 0 or (maximum is not None and maximum < minimum):
        raise ConfigError(fees.source, where, "fees are >= 0 and max >= min")
    return FeeRule(flat=flat, bps=bps, minimum=minimum, maximum=maximum)


def _check_fees(root: _Reader, settings: CardlessSettings) -> None:
    """A fee table must price every card product the seed uses (or have ``default``):
    a product it forgot would otherwise be refused at every quote."""
    if not settings.fees:
        return
    for c in root.items("cards"):
        product = c.get("product", str, "debit")
        if settings.fee_rule(product) is None:
            raise ConfigError(
                root.source, "cardless.fees", f"no fee for card product {product!r} (or default)"
            )


_template_cache: dict[str, str] = {}  # photo digest -> template text, per process


def _face_templates(root: _Reader, seed: Path) -> dict[str, tuple[str, str]]:
    """person id -> (template text, source) from ``face_photo`` or ``face_template``.

    A photo path is absolute or relative to the seed file. A photo that does not exist,
    or a host without the face engine, only leaves that person unenrolled (logged): a
    copied seed or a host without OpenCV still runs. A photo that exists but holds no
    face, several faces or no image is a seed error.
    """
    out: dict[str, tuple[str, str]] = {}
    for p in root.items("persons"):
        person = p.get("id", str)
        if "face_template" in p.table and "face_photo" in p.table:
            raise ConfigError(p.source, f"{p.prefix}face_photo", "give a photo or a template")
        if "face_template" in p.table:
            out[person] = (_template_text(p), "seed template")
            continue
        if "face_photo" not in p.table:
            continue
        photo = Path(p.get("face_photo", str))
        photo = photo if photo.is_absolute() else seed.parent / photo
        if not photo.is_file():
            log.warning(
                "%s: %sface_photo: %s not found; %s is not enrolled for cardless face checks",
                p.source,
                p.prefix,
                photo,
                person,
            )
            continue
        template = _photo_template(p, photo)
        if template is not None:
            out[person] = (template, photo.name)
    return out


def _template_text(p: _Reader) -> str:
    from atm_common.face.verify import FaceTemplate

    text: str = p.get("face_template", str)
    try:
        return FaceTemplate.from_text(text).to_text()
    except AtmError as exc:
        raise ConfigError(p.source, f"{p.prefix}face_template", str(exc)) from None


def _photo_template(p: _Reader, photo: Path) -> str | None:
    """The photo's template (cached by content: every test that seeds a fresh database
    would otherwise pay ~0.1 s of face detection, and a process ~1 s of imports)."""
    data = photo.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest in _template_cache:
        return _template_cache[digest]
    try:
        from atm_common.face.verify import FaceEngineUnavailable, FaceVerifier

        template = FaceVerifier().template(photo).to_text()
    except FaceEngineUnavailable as exc:
        log.error("%s: cannot enrol %s's face: %s", p.source, p.get("id", str), exc)
        return None
    except ImportError as exc:  # numpy itself missing
        log.error("%s: cannot enrol %s's face: %s", p.source, p.get("id", str), exc)
        return None
    except AtmError as exc:  # unreadable image, no face, several faces
        raise ConfigError(p.source, f"{p.prefix}face_photo", f"{photo}: {exc}") from None
    _template_cache[digest] = template
    return template
