"""Money as integer minor units with an ISO 4217 code: parsing what people type, and showing it.

No float ever touches an amount: text is parsed with Decimal from the string itself."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import format_currency, get_currency_precision, list_currencies

from server.errors import Invalid

# Babel also lists codes that are no currency at all (XXX) or reserved for testing (XTS).
CURRENCIES = frozenset(c for c in list_currencies() if c not in {"XXX", "XTS"})
BASIS_POINTS = 10_000  # 100 % = 10,000 bp


def currency(code: str, field: str = "currency") -> str:
    code = (code or "").strip().upper()
    if code not in CURRENCIES:
        raise Invalid(f"{code or 'That'} is not an ISO 4217 currency code (for example EUR, USD, GBP).", field=field)
    return code


def exponent(code: str) -> int:
    return get_currency_precision(code)


def parse_amount(text: str, code: str, *, field: str, label: str, allow_zero: bool = True) -> int:
    """'12.34' EUR -> 1234. Refuses negatives, more decimals than the currency has, and junk."""
    raw = (text or "").strip().replace(",", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise Invalid(f"{label} must be an amount such as 12.50.", field=field) from None
    if not value.is_finite():
        raise Invalid(f"{label} must be an amount such as 12.50.", field=field)
    if value < 0:
        raise Invalid(f"{label} cannot be negative.", field=field)
    places = exponent(code)
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        raise Invalid(f"{label} has more decimals than {code} allows ({places}).", field=field)
    if minor > 10**15:
        raise Invalid(f"{label} is too large.", field=field)
    if not allow_zero and minor == 0:
        raise Invalid(f"{label} must be more than zero.", field=field)
    return int(minor)


def parse_percent_bp(text: str, *, field: str, label: str) -> int:
    """'7.5' (percent) -> 750 basis points, at most two decimals, 0-100 %."""
    raw = (text or "").strip().rstrip("%").strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise Invalid(f"{label} must be a percentage such as 7.5.", field=field) from None
    if not value.is_finite() or value < 0 or value > 100:
        raise Invalid(f"{label} must be between 0 and 100 %.", field=field)
    bp = value * 100
    if bp != bp.to_integral_value():
        raise Invalid(f"{label} allows at most two decimals.", field=field)
    return int(bp)


def to_text(amount_minor: int, code: str) -> str:
    """1234 EUR -> '12.34' (for form fields)."""
    places = exponent(code)
    return f"{Decimal(amount_minor).scaleb(-places):.{places}f}"


def display(amount_minor: int, code: str, locale: str = "en_US") -> str:
    """1234 EUR -> '€12.34'."""
    return format_currency(Decimal(amount_minor).scaleb(-exponent(code)), code, locale=locale)


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
