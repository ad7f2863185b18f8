"""Renders ``templates/notifications/<event>/<channel>.txt`` in a customer's language.

A template's first lines are headers up to a blank line: ``subject: ...`` and, for channels
with keyed templates (WeChat subscribe messages, SMS template parameters), ``field NAME: ...``;
the rest is the body. Sentences are ``_()`` messages from the portal's catalog (zh_Hans_CN; the
msgids are English), so the web and the notifications say the same thing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from babel.support import NullTranslations, Translations

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates" / "notifications"
TRANSLATIONS = ROOT / "portal" / "translations"


class TemplateMissing(LookupError):
    pass


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    fields: dict[str, str]


@functools.cache
def _environment(locale: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined,
                             autoescape=False,  # noqa: S701 - plain text (SMS, email text/plain)
                             keep_trailing_newline=False, extensions=["jinja2.ext.i18n"])
    translations: NullTranslations = NullTranslations()
    if locale != "en":
        translations = Translations.load(str(TRANSLATIONS), [locale])
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


def render(event: str, channel: str, locale: str, params: dict[str, Any]) -> Rendered:
    """Raises ``TemplateMissing`` for an event or channel without a template, and
    ``jinja2.UndefinedError`` when a param the template uses is missing."""
    try:
        template = _environment(locale).get_template(f"{event}/{channel}.txt")
    except jinja2.TemplateNotFound as exc:
        raise TemplateMissing(f"no template {event}/{channel}.txt") from exc
    text = template.render(**params)
    head, _, body = text.partition("\n\n")
    subject, fields = "", {}
    for line in head.splitlines():
        name, _, value = line.partition(": ")
        if name == "subject":
            subject = value
        elif name.startswith("field "):
            fields[name.removeprefix("field ")] = value
    return Rendered(subject, body.strip(), fields)
