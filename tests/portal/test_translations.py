"""Every sentence the code or templates can show has a Chinese translation, and the compiled
catalog Flask-Babel loads says the same as the .po file it came from."""

from gettext import GNUTranslations
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "portal" / "translations" / "zh_Hans_CN" / "LC_MESSAGES"
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}


def _catalog():
    with (CATALOG / "messages.po").open("rb") as f:
        return read_po(f, locale="zh_Hans_CN")


def test_every_message_in_code_and_templates_is_translated() -> None:
    catalog = _catalog()
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    used = set()
    for _, _, message, _, _ in extract_from_dir(
            str(ROOT), method_map=[("portal/**.py", "python"), ("templates/**.html", "jinja2")],
            keywords=KEYWORDS):
        used.add(message if isinstance(message, str) else message[0])
    missing = sorted(used - translated)
    assert not missing, "pybabel extract/update, then translate: " + "; ".join(missing)


def test_compiled_catalog_matches_the_po_file() -> None:
    with (CATALOG / "messages.mo").open("rb") as f:
        compiled = GNUTranslations(f)
    for message in _catalog():
        if message.id and isinstance(message.id, str):
            assert compiled.gettext(message.id) == message.string, message.id
