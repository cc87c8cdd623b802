"""Advertisers' money by API key (/api/v1/advertiser/balances, /fundings): the billing page's
balances (read from the ledger, server/billing/service.py balances_of) and top-ups, and a new
top-up's Stripe Checkout page to send the payer to (billing.start_funding, as the page's form)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import JSONBody

from server.accounts.tables import Role
from server.billing import service as billing
from server.billing import stripe_api
from server.core import money
from server.core.errors import Conflict, Invalid
from server.core.i18n import _
from server.http.advertiser_api.common import REUSED_KEY, advertiser, as_sent
from server.http.apikit import Cursor, CursorQuery, LimitQuery, page
from server.http.openapi import refusals
from server.http.pages import settings_of
from server.http.web import requires_role


class BalanceOut(msgspec.Struct):
    currency: str
    balance_minor: int  # what you hold: conversions are paid from it
    owed_minor: int  # what you owe after refunds or disputes of top-ups already spent
    auto_pause_threshold_minor: int  # below it your campaigns in this currency pause (0: off)
    low: bool  # as the billing page warns: empty, or close to the threshold


class BalanceList(msgspec.Struct):
    items: list[BalanceOut]  # one per currency of your campaigns and top-ups


class FundingOut(msgspec.Struct):
    id: int
    created_at: datetime
    amount_minor: int  # charged at Stripe Checkout: credited_minor plus vat_minor
    credited_minor: int  # added to your balance once Stripe confirms the payment
    vat_minor: int  # the VAT on the top-up's invoice (0 under reverse charge or outside the EU)
    currency: str
    status: Literal["open", "credited", "expired", "failed"]  # open: waiting at Stripe Checkout
    refunded_minor: int
    disputed_minor: int
    receipt_url: str


class FundingPage(msgspec.Struct):
    items: list[FundingOut]
    next_cursor: str | None


class FundingIn(msgspec.Struct):
    amount_minor: Annotated[int, msgspec.Meta(ge=1, le=10**15)]  # to add to the balance; VAT is charged on top
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]


class CheckoutOut(msgspec.Struct):
    checkout_url: str  # send the payer here; the balance is credited when Stripe confirms the payment


class AdvertiserBillingApi(Controller):
    path = "/api/v1/advertiser"
    guards = [requires_role(Role.advertiser)]
    tags = ["advertiser: money"]
    security = [{"apiKey": []}]

    @get(
        "/balances",
        summary="Your balance in each currency",
        description="Read from the ledger, as the billing page shows it.",
    )
    async def balances(self, request: Request) -> BalanceList:
        return BalanceList(
            items=[
                BalanceOut(
                    currency=b.currency,
                    balance_minor=b.balance_minor,
                    owed_minor=b.owed_minor,
                    auto_pause_threshold_minor=b.threshold_minor,
                    low=b.low,
                )
                for b in await billing.balances_of(advertiser(request).id)
            ]
        )

    @get(
        "/fundings",
        summary="Your top-ups, newest first",
        description="Each with its status (open while the payer is at Stripe Checkout, credited once Stripe "
        "confirmed it), amounts and dates. Create one with POST /fundings or on the billing page.",
    )
    async def fundings(self, request: Request, cursor: CursorQuery = None, limit: LimitQuery = 50) -> FundingPage:
        rows = await billing.fundings_of(advertiser(request).id, before_id=Cursor.decode(cursor), limit=limit + 1)
        items, next_cursor = page(rows, limit)
        return FundingPage(
            items=[
                FundingOut(
                    id=f.id,
                    created_at=f.created_at,
                    amount_minor=f.amount_minor,
                    credited_minor=f.credited_minor,
                    vat_minor=f.vat_minor,
                    currency=f.currency,
                    status=f.status,  # type: ignore[arg-type]
                    refunded_minor=f.refunded_minor,
                    disputed_minor=f.disputed_minor,
                    receipt_url=f.receipt_url,
                )
                for f in items
            ],
            next_cursor=next_cursor,
        )

    @post(
        "/fundings",
        status_code=201,
        responses=refusals(
            REUSED_KEY,
            (Invalid, "The amount is below the smallest or above the largest top-up, or the currency is not offered."),
            (
                Conflict,
                "Card payments are not set up here, Stripe could not be reached (nothing was charged), or your "
                "billing details are missing (PUT /billing-profile first).",
            ),
        ),
        summary="Start a top-up: the Stripe Checkout page to pay it on",
        description="As the billing page's Add funds: the top-up is stored (open) and Stripe Checkout opened for "
        "it; the payer pays there, and the balance is credited when Stripe confirms the payment (never by this "
        "call). Send an Idempotency-Key so a retry does not open a second top-up.",
    )
    async def start_funding(self, request: Request, data: JSONBody[FundingIn]) -> CheckoutOut:
        settings = settings_of(request)
        if not stripe_api.configured(settings):
            raise Conflict(_("Card payments are not set up on this affnet (no Stripe key)."))
        user = advertiser(request)
        currency = money.currency(data.currency)
        form = {"currency": currency, "amount": money.form_text(data.amount_minor, currency)}
        async with stripe_api.gateway(settings) as gateway:
            url = await as_sent(
                billing.start_funding(user, form, gateway, settings.base_url), {"amount": "amount_minor"}
            )
        return CheckoutOut(checkout_url=url)
