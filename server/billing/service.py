"""The rules of advertiser funding: top-ups through Stripe Checkout, the balance page, and the
auto-pause threshold. Stripe's events about fundings are applied by server/billing/funding_events.py.

A funding is credited only when Stripe says it was paid (a webhook, processed by the worker),
never because the browser came back to the return page."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from server.accounts.identity import CurrentUser
from server.accounts.tables import NetworkSetting
from server.billing import stripe_api
from server.billing.records import Balance, FundingLine
from server.billing.tables import BillingSettings, Funding, FundingStatus
from server.campaigns import notices
from server.campaigns import service as campaigns
from server.campaigns.tables import Campaign, CampaignStatus
from server.core import clock, db, money
from server.core.errors import Conflict, Invalid, NotFound
from server.core.i18n import _
from server.core.validation import form_field
from server.invoicing import documents, invoices
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K

log = logging.getLogger("affnet.billing")

# Network settings (major units, per currency's own decimals) and their defaults.
MINIMUM_KEY, MAXIMUM_KEY = "funding_minimum", "funding_maximum"
DEFAULT_MINIMUM, DEFAULT_MAXIMUM = "50", "10000"
DEFAULT_CURRENCY = "EUR"
OFFERED_CURRENCIES = ("EUR", "USD", "GBP")
HISTORY_LIMIT = 100
CHECKOUT_LIFETIME = timedelta(hours=24)  # Stripe's default, and longest, for a Checkout Session
LOW_BALANCE_FACTOR = 2  # warn while the balance is under twice the auto-pause threshold
PAUSE_REASON = (
    "Paused by affnet: your {currency} balance ({balance}) is below your auto-pause threshold "
    "({threshold}). Add funds, then resume the campaign."
)
PAUSE_REASON_EMPTY = (
    "Paused by affnet: a refund or dispute left your {currency} balance empty. Add funds, then resume the campaign."
)


async def _setting(key: str, default: str) -> str:
    row = await NetworkSetting.select(NetworkSetting.value).where(NetworkSetting.key == key).first()
    return row["value"] if row else default


async def limits(currency: str) -> tuple[int, int]:
    """The smallest and largest top-up in `currency`, in minor units."""
    # Stored settings are machine text: read in no one's locale (an ambiguous one is refused, never guessed).
    low = money.parse_amount(
        await _setting(MINIMUM_KEY, DEFAULT_MINIMUM), currency, field="amount", label="Minimum", locale=None
    )
    high = money.parse_amount(
        await _setting(MAXIMUM_KEY, DEFAULT_MAXIMUM), currency, field="amount", label="Maximum", locale=None
    )
    return low, high


async def currencies_of(advertiser_id: int) -> list[str]:
    """The currencies an advertiser can fund: their campaigns' first, then the common ones."""
    rows = await Campaign.select(Campaign.currency).where(Campaign.advertiser == advertiser_id).distinct()
    found = sorted({r["currency"] for r in rows})
    return found + [c for c in OFFERED_CURRENCIES if c not in found]


async def parse_funding(advertiser_id: int, form: Mapping[str, Any]) -> tuple[int, str]:
    currency = money.currency(form_field(form, "currency") or DEFAULT_CURRENCY)
    if currency not in await currencies_of(advertiser_id):
        raise Invalid(_("Choose one of the listed currencies."), field="currency")
    amount = money.parse_amount(
        form_field(form, "amount"), currency, field="amount", label=_("Amount"), allow_zero=False
    )
    low, high = await limits(currency)
    if amount < low:
        raise Invalid(_("The smallest top-up is %(amount)s.", amount=money.display(low, currency)), field="amount")
    if amount > high:
        raise Invalid(
            _("The largest top-up is %(amount)s; add more in several top-ups.", amount=money.display(high, currency)),
            field="amount",
        )
    return amount, currency


async def start_funding(
    advertiser: CurrentUser, form: Mapping[str, Any], gateway: stripe_api.Gateway, base_url: str
) -> str:
    """Store a funding, open a Stripe Checkout Session for it, and return where to send the browser."""
    amount, currency = await parse_funding(advertiser.id, form)
    priced = await invoices.quote(advertiser.id, amount, currency)
    now = clock.now()
    reference = secrets.token_hex(8)
    rows = await Funding.insert(
        Funding(
            advertiser=advertiser.id,
            reference=reference,
            amount_minor=priced.total_minor,
            vat_minor=priced.vat_minor,
            vat_rate_bp=priced.vat.rate_bp,
            vat_treatment=priced.vat.treatment.value,
            vat_country=priced.vat.country,
            buyer=documents.dumps(priced.buyer),
            currency=currency,
            status=FundingStatus.pending.value,
            created_at=now,
            updated_at=now,
        )
    ).returning(Funding.id)
    funding_id = rows[0]["id"]
    try:
        session = await gateway.create_checkout_session(
            funding_id=funding_id,
            reference=reference,
            amount_minor=priced.total_minor,
            vat_minor=priced.vat_minor,
            vat_label=priced.vat_label(),
            currency=currency,
            email=advertiser.email,
            # Stripe fills in {CHECKOUT_SESSION_ID}; the return page only shows, it never credits.
            success_url=f"{base_url}/advertiser/billing/return?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base_url}/advertiser/billing?canceled={funding_id}",
        )
    except Exception as exc:
        log.warning("checkout session for funding %s failed: %s", funding_id, exc)
        await Funding.update(
            {
                Funding.status: FundingStatus.failed.value,
                Funding.error: str(exc)[:2000],
                Funding.updated_at: clock.now(),
            }
        ).where(Funding.id == funding_id)
        raise Conflict(
            _("Stripe could not be reached to start the payment. Nothing was charged; please try again in a minute.")
        ) from None
    await Funding.update(
        {
            Funding.status: FundingStatus.open.value,
            Funding.checkout_session_id: session.id,
            Funding.expires_at: session.expires_at or now + CHECKOUT_LIFETIME,
            Funding.updated_at: clock.now(),
        }
    ).where(Funding.id == funding_id, Funding.status == FundingStatus.pending.value)
    if not session.url:
        raise Conflict(_("Stripe did not return a payment page. Nothing was charged; please try again."))
    return session.url


async def abandon_funding(advertiser: CurrentUser, raw_id: str, gateway: stripe_api.Gateway) -> bool:
    """The advertiser came back from Stripe Checkout by its cancel link: close the session at Stripe
    so it can no longer be paid, and the top-up is expired at once (the checkout.session.expired
    event that follows finds it done). Only their own open top-up with no payment started on it;
    True if this call expired it. A forged link can do no more than end a top-up nobody paid."""
    # A funding id is a SERIAL: no row has one past 2**31 - 1, and PostgreSQL refuses to compare one.
    if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 11 and 0 < int(raw_id) < 2**31):
        return False
    row = (
        await Funding.select(Funding.id, Funding.reference, Funding.checkout_session_id)
        .where(
            Funding.id == int(raw_id),
            Funding.advertiser == advertiser.id,
            Funding.status == FundingStatus.open.value,
            Funding.payment_intent_id == "",
        )
        .first()
    )
    if row is None or not row["checkout_session_id"]:
        return False
    key = f"funding:{row['id']}:{row['reference']}:expire"
    if not await gateway.expire_checkout_session(row["checkout_session_id"], idempotency_key=key):
        return False  # paid or expired meanwhile: Stripe's events say which
    expired = (
        await Funding.update({Funding.status: FundingStatus.expired.value, Funding.updated_at: clock.now()})
        .where(Funding.id == row["id"], Funding.status == FundingStatus.open.value)
        .returning(Funding.id)
    )
    return bool(expired)


def _funding_lines() -> Any:
    return Funding.select(
        Funding.id,
        Funding.created_at,
        Funding.amount_minor,
        Funding.vat_minor,
        Funding.currency,
        Funding.status,
        Funding.refunded_minor,
        Funding.disputed_minor,
        Funding.receipt_url,
        Funding.expires_at,
        Funding.payment_intent_id,
    )


def _line(row: dict[str, Any], now: datetime) -> FundingLine:
    """A funding as pages show it. An open one whose Checkout Session is past its expiry is shown
    expired even before Stripe's checkout.session.expired event is applied (or if it never is):
    Stripe takes no payment on an expired session, so nothing was charged. Unless a payment was
    started on it (a SEPA debit completes the session unpaid and settles days later)."""
    expires_at = row.pop("expires_at") or row["created_at"] + CHECKOUT_LIFETIME
    started = bool(row.pop("payment_intent_id"))
    if row["status"] == FundingStatus.open.value and not started and expires_at <= now:
        row["status"] = FundingStatus.expired.value
    return FundingLine.from_row(row)


async def returned(advertiser: CurrentUser, session_id: str, now: datetime | None = None) -> FundingLine:
    """The funding a Checkout Session was for, if it is this advertiser's. Shows state, changes nothing."""
    row = (
        await _funding_lines()
        .where(Funding.checkout_session_id == session_id, Funding.advertiser == advertiser.id)
        .first()
        if session_id
        else None
    )
    if row is None:
        raise NotFound(_("There is no top-up of yours for this payment."))
    return _line(row, now or clock.now())


async def fundings_of(
    advertiser_id: int, now: datetime | None = None, *, before_id: int | None = None, limit: int = HISTORY_LIMIT
) -> list[FundingLine]:
    """The advertiser's newest top-ups, as of `now` (`before_id`: those below it, the API's next page)."""
    now = now or clock.now()
    query = _funding_lines().where(Funding.advertiser == advertiser_id, Funding.status != FundingStatus.pending.value)
    if before_id is not None:
        query = query.where(Funding.id < before_id)
    rows = await query.order_by(Funding.id, ascending=False).limit(limit)
    return [_line(row, now) for row in rows]


async def settings_of(advertiser_id: int) -> dict[str, Any] | None:
    return await BillingSettings.select().where(BillingSettings.advertiser == advertiser_id).first()


async def settings_of_many(advertiser_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The billing settings of each advertiser who has saved any, by advertiser id (one statement)."""
    wanted = sorted(set(advertiser_ids))
    if not wanted:
        return {}
    rows = await BillingSettings.select().where(BillingSettings.advertiser.is_in(wanted))
    return {r["advertiser"]: r for r in rows}


async def save_settings(advertiser: CurrentUser, form: Mapping[str, Any]) -> None:
    currency = money.currency(form_field(form, "currency") or DEFAULT_CURRENCY)
    if currency not in await currencies_of(advertiser.id):
        raise Invalid(_("Choose one of the listed currencies."), field="currency")
    raw = form_field(form, "auto_pause_threshold") or "0"
    threshold = money.parse_amount(raw, currency, field="auto_pause_threshold", label=_("Auto-pause threshold"))
    if threshold > 10**12:
        raise Invalid(_("Auto-pause threshold is too large."), field="auto_pause_threshold")
    async with db.transaction():
        updated = (
            await BillingSettings.update(
                {
                    BillingSettings.currency: currency,
                    BillingSettings.auto_pause_threshold_minor: threshold,
                    BillingSettings.updated_at: clock.now(),
                }
            )
            .where(BillingSettings.advertiser == advertiser.id)
            .returning(BillingSettings.id)
        )
        if not updated:
            await BillingSettings.insert(
                BillingSettings(
                    advertiser=advertiser.id,
                    currency=currency,
                    auto_pause_threshold_minor=threshold,
                    updated_at=clock.now(),
                )
            )
    await enforce_threshold(advertiser.id)


async def balances_of(advertiser_id: int) -> list[Balance]:
    """The advertiser's money per currency: balance, and what they owe after refunds or disputes."""
    campaigns = await Campaign.select(Campaign.currency).where(Campaign.advertiser == advertiser_id).distinct()
    fundings = await Funding.select(Funding.currency).where(Funding.advertiser == advertiser_id).distinct()
    currencies = {r["currency"] for r in campaigns} | {r["currency"] for r in fundings}
    prefs = await settings_of(advertiser_id)
    if prefs:
        currencies.add(prefs["currency"])
    if not currencies:
        currencies = {DEFAULT_CURRENCY}
    result = []
    for currency in sorted(currencies):
        balance = await ledger.balance(K.advertiser_balance, currency, advertiser_id)
        owed = -await ledger.balance(K.advertiser_receivable, currency, advertiser_id)
        threshold = prefs["auto_pause_threshold_minor"] if prefs and prefs["currency"] == currency else 0
        result.append(
            Balance(
                currency=currency,
                balance_minor=balance,
                owed_minor=owed,
                threshold_minor=threshold,
                low=balance == 0 or balance < threshold * LOW_BALANCE_FACTOR,
            )
        )
    return result


# --- pausing -------------------------------------------------------------------------------------


async def _pause_campaigns(advertiser_id: int, currency: str, reason: str) -> list[int]:
    rows = await Campaign.select(Campaign.id).where(
        Campaign.advertiser == advertiser_id,
        Campaign.currency == currency,
        Campaign.status == CampaignStatus.active.value,
    )
    return [r["id"] for r in rows if await campaigns.pause_for_balance(r["id"], reason=reason)]


async def enforce_threshold(advertiser_id: int) -> list[int]:
    """Pause the advertiser's active campaigns if their balance is below their auto-pause threshold
    (each pause is told by mail: campaigns.pause_for_balance), and warn them by mail once a day while it
    is near it (under LOW_BALANCE_FACTOR times the threshold, as the billing page's warning)."""
    prefs = await settings_of(advertiser_id)
    if not prefs or not prefs["auto_pause_threshold_minor"]:
        return []
    currency, threshold = prefs["currency"], prefs["auto_pause_threshold_minor"]
    balance = await ledger.balance(K.advertiser_balance, currency, advertiser_id)
    if balance >= threshold:
        if balance < threshold * LOW_BALANCE_FACTOR and await _has_active_campaign(advertiser_id, currency):
            async with db.transaction():
                await notices.balance_low(advertiser_id, currency, threshold_minor=threshold)
        return []
    return await _pause_campaigns(
        advertiser_id,
        currency,
        PAUSE_REASON.format(
            currency=currency, balance=money.display(balance, currency), threshold=money.display(threshold, currency)
        ),
    )


async def pause_if_short(advertiser_id: int, currency: str) -> list[int]:
    """After money left the balance (a refund or a dispute): pause at zero, or below the threshold."""
    if await ledger.balance(K.advertiser_balance, currency, advertiser_id) <= 0:
        return await _pause_campaigns(advertiser_id, currency, PAUSE_REASON_EMPTY.format(currency=currency))
    return await enforce_threshold(advertiser_id)


async def _has_active_campaign(advertiser_id: int, currency: str) -> bool:
    return await Campaign.exists().where(
        Campaign.advertiser == advertiser_id,
        Campaign.currency == currency,
        Campaign.status == CampaignStatus.active.value,
    )


async def enforce_all_thresholds() -> list[int]:
    """The cron job: every advertiser with a threshold, checked against their balance."""
    rows = await BillingSettings.select(BillingSettings.advertiser).where(
        BillingSettings.auto_pause_threshold_minor > 0
    )
    paused: list[int] = []
    for row in rows:
        paused += await enforce_threshold(row["advertiser"])
    return paused
