"""Languages of the customer screen: gettext catalogs kept as Babel ``.po`` files.

The ``.po`` files are the source; they are compiled in memory when first used (Babel's
reader and writer, the same as ``pybabel compile``), so no ``.mo`` is committed or written
anywhere. A msgid is the English text (a :class:`terminal.ui.Screen` value, a button
label), so English needs no translations and a missing Chinese entry shows in English
rather than breaking the screen; ``tests/kiosk/test_screens.py`` fails on any missing one.
"""

from __future__ import annotations

import dataclasses
import functools
import gettext
import io
from decimal import Decimal
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal

from atm_common.money import exponent

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "kiosk"


@dataclasses.dataclass(frozen=True)
class Language:
    code: str  # the catalog's directory and the page's choice ("en", "zh_Hans")
    locale: str  # Babel locale for numbers and amounts
    html: str  # the page's lang attribute
    name: str  # how the language names itself on the first screen


LANGUAGES = {
    "en": Language("en", "en_US", "en", "English"),
    "zh_Hans": Language("zh_Hans", "zh_Hans_CN", "zh-Hans", "简体中文"),
}
DEFAULT_LANGUAGE = "en"

# ISO 4217 numeric -> alpha, for the currencies a terminal here is configured with.
_ALPHA = {"840": "USD", "978": "EUR", "156": "CNY", "826": "GBP", "392": "JPY", "344": "HKD"}


def po_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(code: str) -> gettext.NullTranslations:
    """The compiled catalog of language ``code`` (English: identity)."""
    path = po_path(code)
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=code)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def gettext_for(code: str) -> gettext.NullTranslations:
    return translations(code if code in LANGUAGES else DEFAULT_LANGUAGE)


def format_amount(minor: int, currency: str, code: str) -> str:
    """``minor`` units of ``currency`` (numeric or alpha ISO 4217) for language ``code``."""
    language = LANGUAGES.get(code, LANGUAGES[DEFAULT_LANGUAGE])
    value = Decimal(minor).scaleb(-exponent(currency))
    alpha = _ALPHA.get(currency, currency)
    if alpha.isalpha():
        return format_currency(value, alpha, locale=language.locale)
    return format_decimal(value, locale=language.locale)


def locale_of(code: str) -> Locale:
    return Locale.parse(LANGUAGES.get(code, LANGUAGES[DEFAULT_LANGUAGE]).locale)
