"""Tables of the billing domain (Stripe in): advertisers' top-ups, the Stripe events received, and
advertisers' billing settings. Only server/billing/service.py writes them."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import BigInt, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User


class FundingStatus(StrEnum):
    pending = "pending"  # row stored, Checkout Session not created yet
    open = "open"  # the advertiser is at Stripe Checkout; the return page shows "processing"
    # (past its expires_at, pages show an open funding as expired: see records.FundingLine)
    credited = "credited"  # Stripe confirmed the payment (by webhook) and the ledger credited it
    expired = "expired"  # the Checkout Session expired unpaid
    failed = "failed"  # the Checkout Session could not be created


class Funding(Table):
    """One top-up of an advertiser's prepaid balance through Stripe Checkout. Amounts in minor units."""

    advertiser = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    # Random, set at insert: Stripe idempotency keys are funding:{id}:{reference}:…, so a database
    # reset (ids start again) never replays another funding's request at Stripe (keys live 24 h).
    reference = Varchar(length=32, default="")
    amount_minor = BigInt()  # what Stripe charges: the amount credited to the balance plus `vat_minor`
    # The VAT on the top-up, decided when it starts (server/invoicing/vat.py) and kept for its invoice and any
    # credit note: treatment "" for top-ups started before invoicing (no VAT, no invoice).
    vat_minor = BigInt(default=0)
    vat_rate_bp = Integer(default=0)
    vat_treatment = Varchar(length=16, default="")
    vat_country = Varchar(length=2, default="")
    buyer = Text(default="")  # the advertiser's party (JSON) when it started: whom the invoice is made out to
    currency = Varchar(length=3)
    fee_minor = BigInt(default=0)  # Stripe's fee, from the charge's balance transaction (the network absorbs it)
    status = Varchar(length=16, choices=FundingStatus, default=FundingStatus.pending, index=True)
    checkout_session_id = Varchar(length=255, default="", index=True)
    payment_intent_id = Varchar(length=255, default="", index=True)
    charge_id = Varchar(length=255, default="", index=True)
    receipt_url = Text(default="")
    refunded_minor = BigInt(default=0)  # cumulative, as Stripe's charge.amount_refunded
    disputed_minor = BigInt(default=0)  # withdrawn by disputes not (yet) won
    error = Text(default="")
    created_at = Timestamptz()
    updated_at = Timestamptz()
    credited_at = Timestamptz(null=True, default=None)
    # When Stripe expires the Checkout Session unpaid (24 h after it was created, unless asked otherwise).
    expires_at = Timestamptz(null=True, default=None)


class BillingSettings(Table):
    """An advertiser's billing choices: below `auto_pause_threshold_minor` of `currency` in their
    balance, the worker pauses their active campaigns in that currency (0: off; a refund or dispute
    that empties the balance pauses them anyway)."""

    advertiser = ForeignKey(User, null=False, unique=True, index=True, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    auto_pause_threshold_minor = BigInt(default=0)
    updated_at = Timestamptz()
