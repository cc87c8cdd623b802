"""Amounts typed in the person's locale: a decimal comma is never read as 100x, the locale decides
only what it can, and what no locale decides is refused with both readings shown (issue 14, item 1)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from babel.numbers import format_currency, format_decimal
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from server.core import locale as locales
from server.core import money
from server.core.errors import Invalid

LOCALES = ["en", "fr", "it", "de", "es", "en_GB", "fr_FR", "it_IT", "de_DE", "es_ES", "de_CH", "fr_CH", "it_CH"]
COMMA_LOCALES = ["fr", "it", "de", "es"]
CODES = ["EUR", "USD", "GBP", "CHF", "JPY", "KWD"]
minor_units = st.integers(min_value=0, max_value=10**13)


def parse(text: str, code: str = "EUR", locale=None) -> int:
    return money.parse_amount(text, code, field="amount", label="Amount", locale=locale)


def major(minor: int, code: str) -> Decimal:
    return Decimal(minor).scaleb(-money.exponent(code))


@settings(max_examples=300, deadline=None)
@given(minor=minor_units, locale=st.sampled_from(LOCALES), code=st.sampled_from(CODES), grouping=st.booleans())
def test_an_amount_formatted_in_a_locale_reads_back_to_the_same_minor_units(minor, locale, code, grouping):
    value = major(minor, code)
    # Babel's *_CH patterns write 10^9 as "1000000'000" (grouping only the last three digits), a shape
    # no person types; it is refused as inconsistent grouping (never misread), so it is left out here.
    assume(not (locale.endswith("_CH") and grouping and value >= 10**9))
    as_number = format_decimal(value, locale=locale, group_separator=grouping, decimal_quantization=False)
    assert parse(as_number, code, locale) == minor
    with_symbol = format_currency(value, code, locale=locale, group_separator=grouping)
    assert parse(with_symbol, code, locale) == minor


@settings(max_examples=300, deadline=None)
@given(minor=minor_units, locale=st.sampled_from(LOCALES), code=st.sampled_from(CODES), grouping=st.booleans())
def test_without_a_locale_an_amount_reads_the_same_or_is_refused_never_another_number(minor, locale, code, grouping):
    """The 100x error cannot happen when nothing says which locale the text was written in."""
    assume(not (locale.endswith("_CH") and grouping and major(minor, code) >= 10**9))  # as above
    text = format_currency(major(minor, code), code, locale=locale, group_separator=grouping)
    try:
        assert parse(text, code, None) == minor
    except money.Ambiguous as refused:
        assert ("could be" in refused.message or "more decimals than" in refused.message) and "write" in refused.message


@settings(max_examples=200, deadline=None)
@given(units=st.integers(0, 10**9), cents=st.integers(0, 99), locale=st.sampled_from([None, *COMMA_LOCALES]))
def test_a_decimal_comma_is_the_decimal_point_in_comma_locales_and_without_a_locale(units, cents, locale):
    assert parse(f"{units},{cents:02d}", "EUR", locale) == units * 100 + cents


@settings(max_examples=200, deadline=None)
@given(units=st.integers(0, 10**9), cents=st.integers(0, 99), locale=st.sampled_from([None, *LOCALES]))
def test_a_decimal_point_is_the_decimal_point_everywhere(units, cents, locale):
    assert parse(f"{units}.{cents:02d}", "EUR", locale) == units * 100 + cents


@pytest.mark.parametrize("locale", [None, *LOCALES])
def test_twelve_fifty_is_1250_minor_never_125000(locale):
    for text in ("12,50", "12.50", "12,5", "€12.50", "12,50 €", "12,50\u00a0€", "EUR 12.50"):
        assert parse(text, "EUR", locale) == 1250, (text, locale)


@pytest.mark.parametrize("text", ["1,250", "1.250", "999,999", "12.345"])
def test_one_separator_then_three_digits_is_refused_when_no_locale_decides(text):
    with pytest.raises(money.Ambiguous) as refused:
        parse(text, "EUR", None)
    assert refused.value.field == "amount" and refused.value.status_code == 422


def test_the_refusal_shows_both_readings_and_how_to_write_each():
    with pytest.raises(money.Ambiguous) as refused:
        parse("1,250", "EUR", None)
    assert refused.value.message == "Amount: 1,250 could be €1.25 or €1,250.00: write 1.25 or 1250."
    with pytest.raises(money.Ambiguous) as in_french:  # fr groups with a space: a dot decides nothing
        parse("1.250", "EUR", "fr_FR")
    assert in_french.value.message == (
        "Amount: 1.250 could be 1,25\u00a0€ or 1\u202f250,00\u00a0€: write 1,25 or 1250."
    )
    with pytest.raises(money.Ambiguous) as yen:  # only one reading is a whole number of yen: still not guessed
        parse("1,250", "JPY", None)
    assert yen.value.message == (
        "Amount: 1,250 has more decimals than JPY allows (0) if “,” is the decimal mark; "
        "if it separates thousands (¥1,250), write 1250."
    )


@pytest.mark.parametrize(
    ("locale", "text", "minor"),
    [
        ("fr", "1,250", 125),
        ("it", "1,250", 125),
        ("de", "1,250", 125),
        ("es", "1,250", 125),
        ("en", "1,250", 125_000),
        ("en", "1.250", 125),
        ("it", "1.250", 125_000),
        ("de", "1.250", 125_000),
        ("es", "1.250", 125_000),
        ("de_CH", "1.250", 125),
        ("de_CH", "1'250", 125_000),
        ("fr_CH", "1'250,50", 125_050),
    ],
)
def test_with_a_locale_the_locale_decides(locale, text, minor):
    assert parse(text, "EUR", locale) == minor


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("1 250,50", 125_050),
        ("1\u00a0250,50", 125_050),
        ("1\u202f250,50", 125_050),
        ("1.250,50", 125_050),
        ("1,250.50", 125_050),
        ("1'250.50", 125_050),
        ("1\u2019250.50", 125_050),
        ("1.250.000", 125_000_000),
        ("1,250,000", 125_000_000),
        ("1 250 000", 125_000_000),
        ("0,25", 25),
        (".5", 50),
        ("1250", 125_000),
        ("+12.50", 1250),
    ],
)
def test_consistent_grouping_is_read_the_same_in_every_locale(text, minor):
    for locale in [None, *LOCALES]:
        assert parse(text, "EUR", locale) == minor, locale


@pytest.mark.parametrize(
    "text",
    [
        "1,25,000",
        "12,50.00",
        "1.250,000.50",
        "1 25",
        "12..50",
        "1,,250",
        "1.2.3",
        "0,250,000",
        "1,250.50.25",
        "12,50 USD",
        "١٢",
        "12e3",
        "0x10",
        "NaN",
        "",
        "€",
    ],
)
def test_inconsistent_or_foreign_shapes_are_refused(text):
    for locale in [None, "en", "fr", "de"]:
        with pytest.raises(Invalid):
            parse(text, "EUR", locale)


def test_the_old_rules_still_hold_negatives_decimals_size_and_zero():
    for text in ("-1", "-12,50", "\u221212,50", "(12.50)"):
        with pytest.raises(Invalid, match="cannot be negative"):
            parse(text, "EUR", "fr")
    with pytest.raises(Invalid, match="more decimals than EUR allows"):
        parse("12,505", "EUR", "fr")
    with pytest.raises(Invalid, match="more decimals than JPY allows"):
        parse("12,5", "JPY", "fr")
    with pytest.raises(Invalid, match="too large"):
        parse("10000000000001", "EUR", "en")
    with pytest.raises(Invalid, match="more than zero"):
        money.parse_amount("0,00", "EUR", field="f", label="Amount", allow_zero=False, locale="fr")
    with pytest.raises(Invalid, match="too long"):
        parse("1" * 100, "EUR", "en")


def test_by_default_the_requests_locale_decides():
    with pytest.raises(money.Ambiguous):
        money.parse_amount("1,250", "EUR", field="f", label="Amount")
    with locales.using("fr-FR"):
        assert money.parse_amount("1,250", "EUR", field="f", label="Amount") == 125
        assert money.display_local(1250, "EUR") == "12,50\u00a0€"
    with locales.using("en-US"):
        assert money.parse_amount("1,250", "EUR", field="f", label="Amount") == 125_000
    assert locales.current() is None and money.display_local(1250, "EUR") == "€12.50"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.8", "fr_FR"),
        ("it-IT", "it_IT"),
        ("en-US,en;q=0.5", "en_US"),
        ("de-CH", "de_CH"),
        ("es", "es"),
        ("ja-JP,fr;q=0.3", "fr"),
        ("en;q=0.2, it;q=0.9", "it"),
        ("fr;q=0, en", "en"),
        ("ja, zh", ""),
        ("", ""),
        ("*", ""),
        ("xx-YY;q=1", ""),
        ("fr-XX", "fr"),
        ("garbage;;;q=abc", ""),
    ],
)
def test_the_request_locale_is_the_best_supported_accept_language(header, expected):
    assert locales.tag(locales.negotiate(None, header)) == expected


def test_a_saved_choice_wins_over_the_browser():
    assert locales.tag(locales.negotiate("it_IT", "fr-FR")) == "it_IT"
    assert locales.tag(locales.negotiate("klingon", "fr-FR")) == "fr_FR"


@settings(max_examples=200, deadline=None)
@given(
    minor=minor_units,
    code=st.sampled_from(CODES),
    written_in=st.sampled_from([None, *LOCALES]),
    read_in=st.sampled_from([None, *LOCALES]),
)
def test_a_prefilled_form_value_reads_back_the_same_whatever_the_locale(minor, code, written_in, read_in):
    """An edit form shows the stored amount; saving it unchanged, even from another locale, keeps it."""
    with locales.using(written_in):
        text = money.form_text(minor, code)
    assert parse(text, code, read_in) == minor


@pytest.mark.parametrize(
    ("text", "bp"), [("7,5", 750), ("7.5", 750), ("12,25 %", 1225), ("100", 10_000), ("1,250", 125)]
)
def test_a_percentage_takes_a_decimal_comma_too(text, bp):
    assert money.parse_percent_bp(text, field="f", label="Share") == bp


@pytest.mark.parametrize("text", ["7,5,1", "7,5.1", "-1", "100,01", "1,2345"])
def test_a_percentage_that_is_no_percentage_is_refused(text):
    with pytest.raises(Invalid):
        money.parse_percent_bp(text, field="f", label="Share")
