"""The French and Italian catalogues hold every sentence the code and templates use, found as
`pybabel extract -F babel.cfg` finds them (not a list kept by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from dev.translations import TARGETS, conflicts, extract, gaps
from server.core import i18n


@pytest.fixture(scope="module")
def messages():
    found = extract()
    assert len(found) > 1000, "extraction found almost nothing: is babel.cfg still reading the templates?"
    return found


@pytest.mark.parametrize("language", TARGETS)
def test_every_sentence_is_translated(language, messages):
    problems = gaps(language, messages.values())
    assert not problems, f"{len(problems)} gap(s), first ones:\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("language", TARGETS)
def test_no_sentence_is_translated_two_ways_by_two_catalogue_files(language):
    assert conflicts(language) == []


def test_two_files_saying_one_sentence_two_ways_are_found(tmp_path: Path):
    folder = tmp_path / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    for name, text in (("a", "Créée"), ("b", "Créée le"), ("c", "Créée")):
        catalogue = Catalog(locale="fr")
        catalogue.add("Created", text)
        with (folder / f"{name}.po").open("wb") as handle:
            write_po(handle, catalogue)
    assert conflicts("fr", tmp_path) == [
        "fr: 'Created' is translated 2 ways: {'a.po': 'Créée', 'b.po': 'Créée le', 'c.po': 'Créée'}"
    ]


def test_a_new_template_sentence_is_a_gap(tmp_path: Path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.html").write_text('<p>{{ _("A sentence nobody translated, %(n)s", n=1) }}</p>')
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "module.py").write_text('from server.core.i18n import _\nX = _("Saved")\n')
    (tmp_path / "babel.cfg").write_text("[python: server/**.py]\n[jinja2: templates/**.html]\n")
    found = extract(tmp_path)
    assert set(found) == {"A sentence nobody translated, %(n)s", "Saved"}
    catalogue = Catalog(locale="fr")
    catalogue.add("Saved", "Enregistré")
    catalogue.add("A sentence nobody translated, %(n)s", "Une phrase, %(count)s")
    problems = gaps("fr", found.values(), catalogue)
    assert problems == [
        "fr: 'A sentence nobody translated, %(n)s' and its translation 'Une phrase, %(count)s' "
        "name different placeholders"
    ]
    del catalogue["A sentence nobody translated, %(n)s"]
    assert [p.split(" (")[0] for p in gaps("fr", found.values(), catalogue)] == [
        "fr: no translation of 'A sentence nobody translated, %(n)s'"
    ]


def test_the_request_language_picks_the_catalogue():
    from server.core import locale

    with locale.using("fr_FR"):
        assert i18n.language() == "fr"
        assert i18n.money_text(125000, "EUR").replace("\u202f", " ").replace("\xa0", " ") == "1 250,00 €"
    with locale.using("it_IT"):
        assert i18n.money_text(1250, "EUR").replace("\xa0", " ") == "12,50 €"
    with locale.using("de_DE"):
        assert i18n.language() == "en"  # German numbers, English words: affnet does not speak German
    with locale.using(None):
        assert i18n.money_text(1250, "EUR") == "€12.50"
