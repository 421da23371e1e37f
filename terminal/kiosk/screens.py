"""Every screen is a Jinja2 template: ``templates/<screen name in lower case>.html``.

A template renders the screen's body from its translated text (``text``), its values
(already formatted for the customer's language) and the PIN length as a count; it also
declares, with ``{% set keys = [...] %}``, the keys the screen offers: those become its
buttons (each labelled with the function key beside the screen that does the same) and
the only keys the terminal accepts from the page while it is shown. A screen that sets no
``keys`` offers none.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from terminal.kiosk.i18n import LANGUAGES, format_amount, gettext_for
from terminal.ui import Amount, Image, Screen

TEMPLATE_DIR = Path(__file__).with_name("templates")
# Keys a screen may offer: the pad's keys, and the language choice (handled by the display).
FUNCTION_KEYS = tuple(f"F{i}" for i in range(1, 9))
PAD_KEYS = frozenset([*FUNCTION_KEYS, "ENTER", "CANCEL", "CLEAR", *"0123456789"])
LANGUAGE_KEYS = frozenset(f"LANG:{code}" for code in LANGUAGES)


class _Blank(dict[str, Any]):
    """Screen values where a missing one reads as blank: a session that forgot a value
    must not lose its customer over a screen."""

    def __missing__(self, key: str) -> str:
        return ""


def template_name(screen: Screen) -> str:
    return f"{screen.name.lower()}.html"


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.globals["choices"] = choices
    return env


def choices(options: str) -> list[tuple[str, str]]:
    """``(key, label)`` pairs of an options value (``"F1 Cash withdrawal   F2 Balance"``,
    as a session builds it from what the host offered), for a screen whose buttons are
    not known before (the enterprise role, menu and account choices)."""
    pairs = []
    for part in options.split("   "):
        key, _, label = part.strip().partition(" ")
        if key in FUNCTION_KEYS and label:
            pairs.append((key, label))
    return pairs


@dataclasses.dataclass(frozen=True)
class Rendered:
    html: str
    text: str
    keys: tuple[str, ...]


def localise(value: object, language: str) -> object:
    """One screen value for ``language``: amounts per locale, images as they are, text
    through the catalog (a decline reason, a receipt line) when it has an entry."""
    if isinstance(value, Amount):
        return format_amount(value.minor, value.currency, language)
    if isinstance(value, Image):
        return value
    if isinstance(value, str):
        return gettext_for(language).gettext(value) if value else value
    return value


def render(
    screen: Screen, values: Mapping[str, Any], language: str, pin_length: int = 0, typed: str = ""
) -> Rendered:
    """The body of ``screen`` in ``language``; raises for a screen without a template."""
    translation = gettext_for(language)
    env = environment()
    shown = {k: localise(v, language) for k, v in values.items() if not isinstance(v, Image)}
    text = translation.gettext(screen.value).format_map(_Blank(shown))
    context = {
        "text": text,
        "values": shown,
        "images": {k: v for k, v in values.items() if isinstance(v, Image)},
        "pin_length": pin_length,
        "typed": typed,
        "languages": LANGUAGES,
        "language_keys": sorted(LANGUAGE_KEYS),
        "language": language,
        "_": translation.gettext,
        "gettext": translation.gettext,
        "ngettext": translation.ngettext,
    }
    module = env.get_template(template_name(screen)).make_module(context)
    keys = tuple(getattr(module, "keys", ()))
    unknown = [k for k in keys if k not in PAD_KEYS | LANGUAGE_KEYS]
    if unknown:
        raise ValueError(f"template {template_name(screen)} offers unknown keys {unknown}")
    return Rendered(str(module), text, keys)
