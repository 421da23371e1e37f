"""Every screen has a template and a translation: the check that makes "add a screen" =
add a :class:`Screen` member + its template + its catalog entries."""

from __future__ import annotations

import string
from pathlib import Path

import jinja2.ext
import pytest
from babel.messages.pofile import read_po

from terminal.kiosk.i18n import LANGUAGES, format_amount, gettext_for, po_path
from terminal.kiosk.screens import TEMPLATE_DIR, render, template_name
from terminal.ui import Amount, Image, Screen

TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def sample_values(screen: Screen) -> dict[str, str]:
    names = [field for _, field, _, _ in string.Formatter().parse(screen.value) if field]
    return {name: Amount(12_345, "840") for name in names}


def template_messages() -> set[str]:
    """The msgids the templates use (``_("...")``), as ``pybabel extract`` finds them."""
    found = set()
    for path in TEMPLATE_DIR.glob("*.html"):
        with path.open("rb") as source:
            for _, _, message, _ in jinja2.ext.babel_extract(source, ("_", "gettext"), [], {}):
                if isinstance(message, str):
                    found.add(message)
    return found


def catalog(code: str) -> dict[str, str]:
    with po_path(code).open("rb") as po:
        return {m.id: m.string for m in read_po(po) if m.id and isinstance(m.id, str)}


@pytest.mark.parametrize("screen", list(Screen), ids=lambda s: s.name)
def test_every_screen_has_a_template_that_renders_in_every_language(screen: Screen) -> None:
    assert (TEMPLATE_DIR / template_name(screen)).is_file(), f"no template for {screen.name}"
    for code in LANGUAGES:
        rendered = render(screen, sample_values(screen), code, pin_length=3)
        assert rendered.html.strip()
        for key in rendered.keys:  # every key offered is a button on the screen
            assert f'data-key="{key}"' in rendered.html, (screen.name, key)


def test_every_screen_and_template_text_has_a_translation_in_every_catalog() -> None:
    wanted = {screen.value for screen in Screen} | template_messages()
    for code in LANGUAGES:
        entries = catalog(code)
        missing = sorted(wanted - entries.keys())
        assert not missing, f"{code}: no catalog entry for {missing}"
        if code != "en":  # English is the msgid itself
            untranslated = sorted(m for m in wanted if not entries[m])
            assert not untranslated, f"{code}: untranslated {untranslated}"


def test_placeholders_survive_translation() -> None:
    for code in LANGUAGES:
        for screen in Screen:
            translated = gettext_for(code).gettext(screen.value)
            fields = {f for _, f, _, _ in string.Formatter().parse(translated) if f}
            assert fields == set(sample_values(screen)), (code, screen.name)


def test_amounts_are_formatted_per_locale() -> None:
    assert format_amount(123_456, "840", "en") == "$1,234.56"
    assert format_amount(123_456, "840", "zh_Hans") == "US$1,234.56"
    assert format_amount(500, "392", "en") == "¥500"
    menu = render(Screen.MENU, {"limit": Amount(90_000, "840")}, "zh_Hans")
    assert "US$900.00" in menu.text and "取款" in menu.text


def test_an_image_value_is_shown_as_an_image_and_must_be_a_png_data_uri() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True)
    body = env.from_string('{% import "_macros.html" as m with context %}{{ m.image("qr") }}')
    html = body.render(images={"qr": Image(TINY_PNG)}, _=str)
    assert f'src="{TINY_PNG}"' in html
    with pytest.raises(ValueError, match="PNG data URI"):
        Image("javascript:alert(1)")


def test_the_pin_screen_shows_a_count_and_offers_no_digit() -> None:
    rendered = render(Screen.ENTER_PIN, {}, "en", pin_length=4)
    assert rendered.keys == ("CANCEL",)
    assert rendered.html.count('class="dot"') == 4
    assert not any(f'data-key="{d}"' in rendered.html for d in "0123456789")


def test_docs_screens_holds_every_screen_in_every_language() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "screens"
    missing = [
        f"{code}/{screen.name.lower()}.png"
        for code in LANGUAGES
        for screen in Screen
        if not (docs / code / f"{screen.name.lower()}.png").is_file()
    ]
    assert not missing, f"run `make screens`: docs/screens lacks {missing}"
