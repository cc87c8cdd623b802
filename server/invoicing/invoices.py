"""Advertisers' invoices and credit notes, for their top-ups.

A top-up's VAT is decided when it starts (`quote`, from the advertiser's billing profile and the
rates in force that day) and kept on the funding: Stripe charges the net amount plus that VAT, the
balance is credited the net, and the ledger's vat_payable owes the VAT. When Stripe confirms the
payment, server/billing/funding_events.py posts the credit and calls `invoice_top_up` in the same
transaction; a refund or a chargeback calls `credit_note` with the share of VAT it gives back, and a
chargeback won back calls `reinvoice`. Each is issued once per event (its source key) and numbered
in the invoice series without a gap (server/invoicing/documents.py).

Amounts of credit notes are negative, so an invoice and the credit note of its whole refund add up
to zero."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from server.accounts import notify
from server.core import clock, money
from server.core import locale as locales
from server.core.errors import Conflict
from server.core.i18n import _, number_text
from server.invoicing import documents, identity, vat
from server.invoicing.tables import DocumentKind, VatTreatment
from server.mail import outbox


@dataclass(frozen=True)
class Quote:
    """What a top-up of `net_minor` costs the advertiser: the VAT on it and the total Stripe charges."""

    net_minor: int
    vat_minor: int
    currency: str
    vat: vat.Vat
    buyer: dict[str, Any]

    @property
    def total_minor(self) -> int:
        return self.net_minor + self.vat_minor

    def vat_label(self) -> str:
        """ "VAT 20 % (FR)" in the reader's language, or the reason there is none."""
        return vat_label(self.vat.treatment, self.vat.rate_bp, self.vat.country)


def vat_label(treatment: str, rate_bp: int, country: str) -> str:
    if treatment == VatTreatment.reverse_charge:
        return _("No VAT: reverse charge")
    if treatment == VatTreatment.outside_eu:
        return _("No VAT: outside the EU")
    return _("VAT %(rate)s %% (%(country)s)", rate=rate_text(rate_bp), country=country)


def rate_text(rate_bp: int) -> str:
    """2000 → "20", 2550 → "25,5" (in the reader's language)."""
    whole, rest = divmod(rate_bp, 100)
    if not rest:
        return str(whole)
    return number_text(rate_bp / 100, places=2 if rest % 10 else 1)


async def quote(advertiser_id: int, net_minor: int, currency: str, on: date | None = None) -> Quote:
    """The VAT on a top-up, from the advertiser's billing profile. Without a profile there is no one to
    make the invoice out to: the top-up waits for it."""
    buyer = await identity.party_of(advertiser_id)
    if buyer is None:
        raise Conflict(
            _(
                "Add your billing details (Billing details, in the menu) before topping up: your invoices "
                "are made out to them."
            )
        )
    seller = identity.network_party()
    try:
        applied = await vat.treatment(seller["country"], buyer, on or clock.now().date())
    except vat.NoRate as exc:
        raise Conflict(
            _("affnet has no VAT rate for %(country)s today; please contact support.", country=buyer["country"])
        ) from exc
    return Quote(net_minor, vat.vat_on(net_minor, applied.rate_bp), currency, applied, buyer)


def _reverse_charge(buyer: dict[str, Any]) -> str:
    return _(
        "Reverse charge: VAT to be accounted for by the customer (Article 196 of Council Directive "
        "2006/112/EC). Customer's VAT number: %(vat_number)s.",
        vat_number=buyer.get("vat_number", ""),
    )


def _mentions(treatment: str, buyer: dict[str, Any], paid_at: datetime) -> list[str]:
    found = []
    if treatment == VatTreatment.reverse_charge:
        found.append(_reverse_charge(buyer))
    elif treatment == VatTreatment.outside_eu:
        found.append(_("VAT not applicable: services supplied outside the EU (Article 44 of Directive 2006/112/EC)."))
    elif treatment == VatTreatment.eu_consumer:
        found.append(_("VAT of the customer's country, declared through the One-Stop Shop (OSS)."))
    found.append(_("Paid by card through Stripe on %(date)s: nothing remains due.", date=paid_at.date().isoformat()))
    return found


async def _locale(owner: int, buyer: dict[str, Any]) -> str:
    return identity.document_locale(await identity.language_of(owner), buyer)


async def invoice_top_up(funding: dict[str, Any], *, issued_at: datetime | None = None) -> dict[str, Any] | None:
    """The invoice of a credited top-up (a funding row), in the crediting transaction; None for a top-up
    started before invoicing (its charge carried no VAT and it has no buyer on record)."""
    if not funding["vat_treatment"]:
        return None
    issued_at = issued_at or clock.now()
    buyer = json.loads(funding["buyer"])
    net = funding["amount_minor"] - funding["vat_minor"]
    language = await _locale(funding["advertiser"], buyer)
    with locales.using(language):
        lines = [
            {
                "description": _("Prepaid advertising balance on affnet (top-up no. %(id)s)", id=funding["id"]),
                "quantity": 1,
                "unit_minor": net,
                "amount_minor": net,
            }
        ]
        mentions = _mentions(funding["vat_treatment"], buyer, issued_at)
    return await _told(
        kind=DocumentKind.invoice,
        series=identity.series(DocumentKind.invoice),
        owner=funding["advertiser"],
        source_key=f"funding:{funding['id']}:invoice",
        issued_at=issued_at,
        currency=funding["currency"],
        net_minor=net,
        vat_minor=funding["vat_minor"],
        vat_rate_bp=funding["vat_rate_bp"],
        vat_country=funding["vat_country"],
        treatment=VatTreatment(funding["vat_treatment"]),
        locale=language,
        seller=identity.network_party(),
        buyer=buyer,
        lines=lines,
        mentions=mentions,
        funding=funding["id"],
    )


async def _told(**fields: Any) -> dict[str, Any]:
    """Issue the document, and tell its owner by mail (in the same transaction: the mail is written only
    if the document is; a document issued before is not told again)."""
    document = await documents.issue(**fields)
    await notify.send(
        "invoice_issued",
        document["owner"],
        {
            "reference": document["reference"],
            "credit_note": document["kind"] == DocumentKind.credit_note.value,
            "total_minor": abs(document["total_minor"]),
            "vat_minor": abs(document["vat_minor"]),
            "currency": document["currency"],
            "description": fields["lines"][0]["description"],
            "pdf_url": outbox.link(f"/documents/{document['id']}.pdf"),
            "invoices_url": outbox.link("/advertiser/invoices"),
        },
        dedupe_key=f"invoice_issued:{document['id']}",
    )
    return document


def vat_share(funding: dict[str, Any], before: int, after: int) -> int:
    """The VAT in what is taken back of a top-up when the total taken back goes from `before` to
    `after` (refunds and chargebacks, cumulative): shares of a cumulative whole, so they add up to the
    invoice's VAT exactly once all of it is taken back."""
    gross, tax = funding["amount_minor"], funding["vat_minor"]
    return vat.share(after, gross, tax) - vat.share(before, gross, tax)


async def credit_note(
    funding: dict[str, Any], amount: int, vat_part: int, *, source_key: str, reason: str
) -> dict[str, Any] | None:
    """A credit note for `amount` (VAT `vat_part` included) of a top-up given back: a refund or a
    chargeback (`reason`: "refund" or "chargeback"). In the transaction of the withdrawal."""
    invoice = await documents.by_source(f"funding:{funding['id']}:invoice")
    if invoice is None:
        return None  # a top-up from before invoicing: nothing to correct
    issued_at = clock.now()
    buyer = json.loads(invoice["buyer"])
    net = amount - vat_part
    with locales.using(invoice["locale"]):
        text = (
            _("Refund of top-up no. %(id)s", id=funding["id"])
            if reason == "refund"
            else _("Chargeback of top-up no. %(id)s (card dispute)", id=funding["id"])
        )
        lines = [{"description": text, "quantity": 1, "unit_minor": -net, "amount_minor": -net}]
        mentions = [
            _(
                "Credit note for invoice %(reference)s of %(date)s (%(amount)s).",
                reference=invoice["reference"],
                date=invoice["issued_at"].date().isoformat(),
                amount=money.display(invoice["total_minor"], invoice["currency"]),
            )
        ]
        if invoice["treatment"] == VatTreatment.reverse_charge:
            mentions.append(_reverse_charge(buyer))
    return await _told(
        kind=DocumentKind.credit_note,
        series=identity.series(DocumentKind.credit_note),
        owner=funding["advertiser"],
        source_key=source_key,
        issued_at=issued_at,
        currency=funding["currency"],
        net_minor=-net,
        vat_minor=-vat_part,
        vat_rate_bp=invoice["vat_rate_bp"],
        vat_country=invoice["vat_country"],
        treatment=VatTreatment(invoice["treatment"]),
        locale=invoice["locale"],
        seller=json.loads(invoice["seller"]),
        buyer=buyer,
        lines=lines,
        mentions=mentions,
        funding=funding["id"],
        corrects=invoice["id"],
    )


async def reinvoice(funding: dict[str, Any], amount: int, vat_part: int, *, source_key: str) -> dict[str, Any] | None:
    """A chargeback won back: the amount is the advertiser's again, invoiced again (as the original)."""
    invoice = await documents.by_source(f"funding:{funding['id']}:invoice")
    if invoice is None:
        return None
    issued_at = clock.now()
    net = amount - vat_part
    with locales.using(invoice["locale"]):
        lines = [
            {
                "description": _("Top-up no. %(id)s restored: the card dispute was won", id=funding["id"]),
                "quantity": 1,
                "unit_minor": net,
                "amount_minor": net,
            }
        ]
        mentions = _mentions(invoice["treatment"], json.loads(invoice["buyer"]), issued_at)
    return await _told(
        kind=DocumentKind.invoice,
        series=identity.series(DocumentKind.invoice),
        owner=funding["advertiser"],
        source_key=source_key,
        issued_at=issued_at,
        currency=funding["currency"],
        net_minor=net,
        vat_minor=vat_part,
        vat_rate_bp=invoice["vat_rate_bp"],
        vat_country=invoice["vat_country"],
        treatment=VatTreatment(invoice["treatment"]),
        locale=invoice["locale"],
        seller=json.loads(invoice["seller"]),
        buyer=json.loads(invoice["buyer"]),
        lines=lines,
        mentions=mentions,
        funding=funding["id"],
        corrects=invoice["id"],
    )
