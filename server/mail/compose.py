"""Writing a message: the kind's two templates (templates/mail/<kind>.txt and .html) rendered in the
recipient's language and time zone, links made absolute with BASE_URL.

The .txt holds the subject (`{% block subject %}`) and the plain-text part; the .html the HTML part,
autoescaped. No image, pixel or remote resource in our own mail: nothing tells us who opened it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2

from server.core import i18n, money
from server.core import locale as locales
from server.core.settings import ROOT


@dataclass(frozen=True)
class Written:
    subject: str
    text: str
    html: str


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROOT / "templates"),
        autoescape=jinja2.select_autoescape(
            ["html"], disabled_extensions=["txt"], default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,  # a missing value fails the test, not the reader
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["money"] = money
    env.globals["app_name"] = "affnet"
    i18n.install(env)
    return env


def _block(template: jinja2.Template, name: str, context: dict[str, Any]) -> str:
    return "".join(template.blocks[name](template.new_context(context))).strip()


def write(kind: str, context: dict[str, Any], *, language: str, zone: str = "") -> Written:
    """The message of this kind for these values, in `language` (en, fr, it; "" reads as English)."""
    env = environment()
    with locales.using(language or "en", zone or None):
        text_template = env.get_template(f"mail/{kind}.txt")
        subject = re.sub(r"[ \t\r\n]+", " ", _block(text_template, "subject", context))  # no-break spaces stay
        text = text_template.render(context).strip() + "\n"
        html = env.get_template(f"mail/{kind}.html").render(context)
    return Written(subject=subject, text=text, html=html)
