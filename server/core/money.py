"""Money as integer minor units with an ISO 4217 code: parsing what people type, and showing it.

No float ever touches an amount: text is parsed with Decimal from the string itself."""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale, localedata
from babel.lists import format_list
from babel.numbers import (
    NumberFormatError,
    format_currency,
    get_currency_precision,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
    list_currencies,
    parse_decimal,
)

from server.core import locale as locales
from server.core.errors import Invalid
from server.core.i18n import _, language

# Babel also lists codes that are no currency at all (XXX) or reserved for testing (XTS).
CURRENCIES = frozenset(c for c in list_currencies() if c not in {"XXX", "XTS"})
BASIS_POINTS = 10_000  # 100 % = 10,000 bp


def currency(code: str, field: str = "currency") -> str:
    code = (code or "").strip().upper()
    if code not in CURRENCIES:
        if not code:
            raise Invalid(_("That is not an ISO 4217 currency code (for example EUR, USD, GBP)."), field=field)
        raise Invalid(
            _("%(code)s is not an ISO 4217 currency code (for example EUR, USD, GBP).", code=code), field=field
        )
    return code


def exponent(code: str) -> int:
    return get_currency_precision(code)


# Amounts people type, read in their locale (server/core/locale.py). Babel supplies each locale's
# decimal and group symbols and a strict cross-check; the shape rules are ours, because Babel's
# own lenient parse reads "12,50" in English as 1250 and "12.50" in German as 1250: the very 100x
# error this exists to prevent. The rules, for one separator followed by exactly three digits
# ("1,250" / "1.250") the only shape two readings fit:
#   - the locale decides when the separator is its decimal or its group symbol (en: 1,250 = 1250,
#     1.250 = 1.25; fr/it/de/es: 1,250 = 1.25; it/de/es: 1.250 = 1250);
#   - otherwise (no locale, or fr's "1.250") it is refused with both readings shown.
# Every other shape has one reading whatever the locale: "12,50" and "12.50" are 12.50; two kinds of
# separator make the last one the decimal ("1.250,50", "1,250.50", "1 250,50", "1'250.50"); the
# group separators must be one kind in groups of three ("1,25,000" is refused).
_SPACES = " \u00a0\u202f\u2009\u2007"  # space, no-break space, narrow no-break space, thin, figure
_APOSTROPHES = "'\u2019"  # de-CH, fr-CH, it-CH group with an apostrophe
_SEPARATORS = ".," + _SPACES + _APOSTROPHES
_SHAPE = re.compile(f"([0-9]*)((?:[{_SEPARATORS}][0-9]+)*)")
_PART = re.compile(f"([{_SEPARATORS}])([0-9]+)")
MAX_AMOUNT_TEXT = 64
MAX_MINOR = 10**15
FROM_REQUEST: Any = object()  # parse_amount's default: the locale of the request being served


class Ambiguous(Invalid):
    """'1,250' with nothing to say whether the comma is a decimal point or a thousands separator."""

    code = "ambiguous_amount"


def _kind(separator: str) -> str:
    return " " if separator in _SPACES else "'" if separator in _APOSTROPHES else separator


def _grouped(groups: list[str]) -> bool:
    """1-3 digits (no leading zero), then groups of exactly three."""
    return 1 <= len(groups[0]) <= 3 and not groups[0].startswith("0") and all(len(g) == 3 for g in groups[1:])


def _symbols(locale: Locale | None) -> tuple[str, str]:
    if locale is None:
        return "", ""
    return _kind(get_decimal_symbol(locale)), _kind(get_group_symbol(locale))


def read_number(text: str, locale: Locale | None) -> tuple[Decimal | None, tuple[Decimal, Decimal] | None]:
    """(value, None) when `text` has one reading; (None, (as decimal, as grouped)) when only a
    locale could decide and this one does not; raises ValueError when it is no number at all."""
    match = _SHAPE.fullmatch(text)
    if not match or not text:
        raise ValueError(text)
    first, rest = match.group(1), match.group(2)
    parts = _PART.findall(rest)
    separators = [_kind(sep) for sep, _ in parts]
    groups = [first] + [digits for _, digits in parts]
    kinds = list(dict.fromkeys(separators))
    if not parts:
        return Decimal(first), None
    if not first:  # ".5", ",50": a leading separator can only be a decimal point
        if len(parts) != 1 or separators[0] not in ".,":
            raise ValueError(text)
        return Decimal("0." + groups[1]), None
    if len(kinds) == 2:
        decimal_sep = separators[-1]
        if decimal_sep not in ".," or separators.count(decimal_sep) != 1 or not _grouped(groups[:-1]):
            raise ValueError(text)
        return Decimal("".join(groups[:-1]) + "." + groups[-1]), None
    if len(kinds) > 2:
        raise ValueError(text)
    kind = kinds[0]
    if kind in " '" or len(parts) > 1:  # spaces, apostrophes, or the same mark twice: grouping only
        if not _grouped(groups):
            raise ValueError(text)
        return Decimal("".join(groups)), None
    as_decimal = Decimal(groups[0] + "." + groups[1])
    if len(groups[1]) != 3 or not _grouped(groups):
        return as_decimal, None  # "12,50", "0,250", "1234,567": no grouping reads this way
    as_grouped = Decimal(groups[0] + groups[1])
    decimal_symbol, group_symbol = _symbols(locale)
    if kind == decimal_symbol:
        return as_decimal, None
    if kind == group_symbol:
        return as_grouped, None
    return None, (as_decimal, as_grouped)


def _plain(value: Decimal, decimal_symbol: str) -> str:
    """A way to write `value` that reads the same in every locale: no grouping, and never exactly
    three decimals (1.250 -> 1.25, 1.005 -> 1.0050)."""
    text = format(value.normalize(), "f")
    if "." in text and len(text.split(".")[1]) == 3:
        text += "0"
    return text.replace(".", decimal_symbol)


@functools.lru_cache(maxsize=64)
def _currency_marks(code: str) -> tuple[str, ...]:
    """How `code` is written beside an amount in any territory of the supported languages ('€',
    'EUR', 'US$', '$US', 'CHF'...), longest first, upper-cased."""
    marks = {code}
    for identifier in localedata.locale_identifiers():
        if identifier.split("_")[0] in locales.SUPPORTED:
            marks.add(get_currency_symbol(code, identifier))
    return tuple(sorted({m.upper() for m in marks}, key=len, reverse=True))


def _without_currency(text: str, code: str) -> str:
    """'€12.50', '12,50 €', 'EUR 12.50' -> the number. Another currency's mark stays, and is refused."""
    upper = text.upper()
    for mark in _currency_marks(code):
        if upper.startswith(mark):
            text, upper = text[len(mark) :].strip(), upper[len(mark) :].strip()
            break
    for mark in _currency_marks(code):
        if upper.endswith(mark):
            text = text[: -len(mark)].strip()
            break
    return text


def parse_amount(
    text: str, code: str, *, field: str, label: str, allow_zero: bool = True, locale: Locale | str | None = FROM_REQUEST
) -> int:
    """What a person typed -> minor units of `code`: '12,50' EUR -> 1250, in any locale.

    `locale` is the one the text was written in; by default the request's (server/core/locale.py),
    None for text that has no locale (ambiguous shapes are then refused). Refuses negatives,
    more decimals than the currency has, amounts over 10^13 major units, and anything else."""
    if locale is FROM_REQUEST:
        locale = locales.current()
    elif isinstance(locale, str):
        locale = locales.parse_tag(locale)
    raw = _without_currency((text or "").strip(), code)
    example = "12.50" if locale is None or _symbols(locale)[0] == "." else "12,50"
    if raw[:1] in "-\u2212(" and raw:
        raise Invalid(_("%(label)s cannot be negative.", label=label), field=field)
    if len(raw) > MAX_AMOUNT_TEXT:
        raise Invalid(_("%(label)s is too long to be an amount.", label=label), field=field)
    try:
        value, readings = read_number(raw.removeprefix("+"), locale)
    except ValueError:
        raise Invalid(
            _("%(label)s must be an amount such as %(example)s.", label=label, example=example), field=field
        ) from None
    if readings is not None:
        decimal_symbol = _symbols(locale)[0] if locale is not None and _symbols(locale)[0] in ".," else "."
        as_decimal, as_grouped = readings
        places = exponent(code)
        if as_decimal.scaleb(places) != as_decimal.scaleb(places).to_integral_value():
            # Only the grouped reading is an amount of this currency; still not guessed: a mistyped
            # decimal (12.345 for 12.35) would otherwise become a thousand times more.
            raise Ambiguous(
                _(
                    "%(label)s: %(raw)s has more decimals than %(code)s allows (%(places)s) if “%(mark)s” is the "
                    "decimal mark; if it separates thousands (%(grouped)s), write %(write)s.",
                    label=label,
                    raw=raw,
                    code=code,
                    places=places,
                    mark=raw[len(raw) - 4],
                    grouped=display_local(as_grouped, code, locale, major=True),
                    write=_plain(as_grouped, decimal_symbol),
                ),
                field=field,
            )
        shown = _either([display_local(r, code, locale, major=True) for r in readings])
        write = _either([_plain(r, decimal_symbol) for r in readings])
        raise Ambiguous(
            _(
                "%(label)s: %(raw)s could be %(shown)s: write %(write)s.",
                label=label,
                raw=raw,
                shown=shown,
                write=write,
            ),
            field=field,
        )
    assert value is not None
    if locale is not None:
        _agrees_with_babel(raw, value, locale, label, field)
    places = exponent(code)
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        raise Invalid(
            _("%(label)s has more decimals than %(code)s allows (%(places)s).", label=label, code=code, places=places),
            field=field,
        )
    if minor > MAX_MINOR:
        raise Invalid(_("%(label)s is too large.", label=label), field=field)
    if not allow_zero and minor == 0:
        raise Invalid(_("%(label)s must be more than zero.", label=label), field=field)
    return int(minor)


def _either(choices: list[str]) -> str:
    """'a or b' in the language the message is written in."""
    return format_list(choices, style="or", locale=language())


def _agrees_with_babel(raw: str, value: Decimal, locale: Locale, label: str, field: str) -> None:
    """Where Babel's strict parser reads the text in this locale too, it must read the same number:
    a disagreement means the shape rules above missed a case, and guessing is not allowed."""
    group = get_group_symbol(locale)
    normalised = "".join(group if _kind(ch) == _kind(group) and ch in _SPACES + _APOSTROPHES else ch for ch in raw)
    try:
        theirs = parse_decimal(normalised, locale, strict=True)
    except NumberFormatError:
        return
    if theirs != value:
        raise Ambiguous(
            _(
                "%(label)s: %(raw)s could be read as %(readings)s: write it without thousands separators.",
                label=label,
                raw=raw,
                readings=_either([str(theirs), str(value)]),
            ),
            field=field,
        )


def parse_percent_bp(text: str, *, field: str, label: str) -> int:
    """'7.5' or '7,5' (percent) -> 750 basis points, at most two decimals, 0-100 %. A percentage has
    no thousands to group, so a single comma can only be a decimal comma."""
    raw = (text or "").strip().rstrip("%").strip()
    if raw.count(",") == 1 and "." not in raw:
        raw = raw.replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise Invalid(_("%(label)s must be a percentage such as 7.5.", label=label), field=field) from None
    if not value.is_finite() or value < 0 or value > 100:
        raise Invalid(_("%(label)s must be between 0 and 100 %%.", label=label), field=field)
    bp = value * 100
    if bp != bp.to_integral_value():
        raise Invalid(_("%(label)s allows at most two decimals.", label=label), field=field)
    return int(bp)


def to_text(amount_minor: int, code: str) -> str:
    """1234 EUR -> '12.34' (for form fields)."""
    places = exponent(code)
    return f"{Decimal(amount_minor).scaleb(-places):.{places}f}"


def form_text(amount_minor: int, code: str, locale: Locale | None | Any = FROM_REQUEST) -> str:
    """1250 EUR -> '12.50' (no locale, en) or '12,50' (fr, it, de, es): a form field's value that
    parse_amount reads back to the same amount in any locale (never grouped, never exactly three
    decimals: KWD 1.250 is written 1.2500)."""
    if locale is FROM_REQUEST:
        locale = locales.current()
    decimal_symbol = get_decimal_symbol(locale) if locale is not None else "."
    text = to_text(amount_minor, code)
    if "." in text and len(text.split(".")[1]) == 3:
        text += "0"
    return text.replace(".", "," if decimal_symbol == "," else ".")


def display(amount_minor: int, code: str, locale: Locale | None | Any = FROM_REQUEST) -> str:
    """1234 EUR -> '€12.34' (en, or no locale), '12,34 €' (fr, it): a stored amount in the reader's locale."""
    return display_local(amount_minor, code, locale)


def display_local(
    amount: int | Decimal, code: str, locale: Locale | None | Any = FROM_REQUEST, *, major: bool = False
) -> str:
    """An amount in the reader's locale (1250 EUR -> '12,50 €' in fr, '€12.50' with none): the echo of
    what was understood. `major`: `amount` is already in major units (a reading, not a stored amount)."""
    if locale is FROM_REQUEST:
        locale = locales.current()
    value = Decimal(amount) if major else Decimal(amount).scaleb(-exponent(code))
    return format_currency(value, code, locale=locale or "en_US", decimal_quantization=not major)


def percent_text(bp: int) -> str:
    return f"{Decimal(bp) / 100:f}".rstrip("0").rstrip(".") if bp % 100 else str(bp // 100)


def revshare_split(sale_minor: int, advertiser_bp: int, publisher_bp: int) -> tuple[int, int, int]:
    """The one rounding rule for shares of a sale: (advertiser price, publisher payout, network margin).

    Price and payout are each rounded down to the minor unit; the margin is the price less the
    payout, so it takes every remainder and the three always satisfy price = payout + margin.
    With publisher_bp <= advertiser_bp the payout never exceeds the price."""
    if sale_minor < 0 or not 0 <= publisher_bp <= advertiser_bp <= BASIS_POINTS:
        raise ValueError("sale must be >= 0 and 0 <= publisher_bp <= advertiser_bp <= 10000")
    price = sale_minor * advertiser_bp // BASIS_POINTS
    payout = sale_minor * publisher_bp // BASIS_POINTS
    return price, payout, price - payout


def flat_split(advertiser_minor: int, publisher_minor: int) -> tuple[int, int, int]:
    """(price, payout, margin) of a flat-priced event (CPC, CPL, CPA; CPM per thousand)."""
    if not 0 <= publisher_minor <= advertiser_minor:
        raise ValueError("0 <= publisher amount <= advertiser amount")
    return advertiser_minor, publisher_minor, advertiser_minor - publisher_minor
