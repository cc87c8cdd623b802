"""Every kind of message has its two parts, and the plain-text part keeps its line breaks."""

from __future__ import annotations

import re

import pytest

from server.core.settings import ROOT
from server.mail import kinds

MAIL = ROOT / "templates" / "mail"


@pytest.mark.parametrize("name", sorted(kinds.KINDS))
def test_each_kind_has_a_subject_a_text_and_an_html_part(name):
    text = (MAIL / f"{name}.txt").read_text()
    html = (MAIL / f"{name}.html").read_text()
    assert '{% extends "mail/layout.txt" %}' in text and "{% block subject %}" in text
    assert '{% extends "mail/layout.html" %}' in html and "{% block content %}" in html
    assert "<img" not in html  # no pixel, no remote image in our own mail


@pytest.mark.parametrize("path", sorted(MAIL.glob("*.txt")), ids=lambda p: p.name)
def test_no_text_line_loses_its_line_break(path):
    """The text environment trims the line break after a block tag (so `{% if %}` lines leave none);
    a sentence that ends its line with `{% endtrans %}` would be glued to the next line (a link):
    such lines end with `{% endtrans +%}`, which keeps it."""
    glued = [n for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\{%-? endtrans -?%\}$", line)]
    assert not glued, f"{path.name}: lines {glued} end with {{% endtrans %}}: write {{% endtrans +%}}"
