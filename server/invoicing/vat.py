"""VAT on what affnet sells advertisers (an electronically supplied service) and on what publishers
sell affnet, by the EU's rules for services:

- a customer in the seller's own country pays the seller's country's rate (domestic);
- a business in another EU country with a valid VAT number pays no VAT: it accounts for it itself
  (reverse charge, art. 196 of Directive 2006/112/EC), and the invoice says so;
- a consumer elsewhere in the EU (or a business there without a valid VAT number) pays their own
  country's rate (the One-Stop Shop rule for electronically supplied services, art. 58);
- a customer outside the EU pays none (outside the scope of EU VAT, art. 44 / 59).

"Valid" means well-formed with correct check digits (python-stdnum); affnet cannot reach VIES from
every deployment, so finance confirms numbers there when it matters.

Rates live in the `vat_rate` table with their validity dates; an amount's VAT is rounded half up to
the currency's minor unit."""

from __future__ import annotations

from datetime import date
from typing import Any, NamedTuple

from server.invoicing.tables import VatRate, VatTreatment

EU = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())


class Vat(NamedTuple):
    treatment: VatTreatment
    rate_bp: int  # basis points: 2000 = 20 %
    country: str  # whose rate applies ("" when none does)


class NoRate(LookupError):
    """No VAT rate of a country is in force on a date: finance must add one (vat_rate)."""


async def rate(country: str, on: date) -> int:
    """The standard rate of `country` in force on `on`, in basis points."""
    row = (
        await VatRate.select(VatRate.rate_bp)
        .where(VatRate.country == country, VatRate.valid_from <= on)
        .where((VatRate.valid_to.is_null()) | (VatRate.valid_to > on))
        .order_by(VatRate.valid_from, ascending=False)
        .first()
    )
    if row is None:
        raise NoRate(f"no VAT rate of {country} is in force on {on.isoformat()}")
    return row["rate_bp"]


def _business_with_vat(party: dict[str, Any]) -> bool:
    return party.get("kind") == "business" and bool(party.get("vat_number"))


async def treatment(seller_country: str, buyer: dict[str, Any], on: date) -> Vat:
    """What VAT a sale from a seller in `seller_country` to `buyer` (a billing profile's fields:
    kind, country, vat_number; its VAT number already validated) bears on `on`."""
    country = (buyer.get("country") or "").upper()
    if country == seller_country:
        return Vat(VatTreatment.domestic, await rate(seller_country, on), seller_country)
    if country not in EU:
        return Vat(VatTreatment.outside_eu, 0, "")
    if _business_with_vat(buyer):
        return Vat(VatTreatment.reverse_charge, 0, "")
    return Vat(VatTreatment.eu_consumer, await rate(country, on), country)


def vat_on(net_minor: int, rate_bp: int) -> int:
    """The VAT on a net amount, rounded half up (amounts are >= 0; a credit note negates its own)."""
    if net_minor < 0:
        return -vat_on(-net_minor, rate_bp)
    return (net_minor * rate_bp + 5_000) // 10_000


def share(part: int, whole: int, of: int) -> int:
    """`of` * part / whole rounded half up: the VAT share of a partial refund (cumulative, so the
    shares of every partial refund add up to exactly `of` once all of `whole` is refunded)."""
    if whole <= 0:
        return 0
    return (of * part * 2 + whole) // (2 * whole)
