"""Stripe's events about fundings (payments, refunds, disputes), handed over by the Stripe event
inbox (server/stripe_events/service.py), which verifies and records every event once.

Every movement of money has a ledger key derived from the funding id, and every change of a
funding happens with its row locked, in the same database transaction as the ledger posting:
    funding:{id}:credited                       checkout.session.completed / payment_intent.succeeded
    funding:{id}:refunded:{cumulative refunded} charge.refunded (only the part not reversed before)
    funding:{id}:dispute:{dispute id}:withdrawn charge.dispute.created / .funds_withdrawn / .closed
    funding:{id}:dispute:{dispute id}:reinstated charge.dispute.closed (won) / .funds_reinstated
Any event about a payment first makes sure the payment itself is credited, so a refund that
arrives before the payment's own events still lands on a credited funding.

A top-up paid by an asynchronous method (SEPA debit) completes its Checkout Session unpaid: nothing is
credited until `checkout.session.async_payment_succeeded`; `async_payment_failed` marks the funding
failed. A session that expires unpaid marks it expired. An inquiry (a dispute in `warning_*`) moves no
money: only a dispute proper withdraws the funds."""

from __future__ import annotations

import logging
from typing import Any

from server.billing import service as billing
from server.billing.stripe_api import Gateway
from server.billing.tables import Funding, FundingStatus
from server.core import clock, db
from server.invoicing import invoices
from server.ledger import postings
from server.ledger.service import InsufficientFunds

log = logging.getLogger("affnet.billing")

RETRIES = 3  # a concurrent spend may change the balance a withdrawal was split against


# Checkout events that end a funding without money: its new status and the outcome recorded.
NEVER_PAID = {
    "checkout.session.expired": (FundingStatus.expired, "expired"),
    "checkout.session.async_payment_failed": (FundingStatus.failed, "payment failed"),
}


class NotYet(Exception):
    """Stripe has not finished with the payment (no charge or balance transaction yet): try later."""


async def apply(event_type: str, obj: dict[str, Any], gateway: Gateway) -> str | None:
    """What was done with a platform event about a funding, or None when it is not about one."""
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        funding = await _funding(obj.get("metadata"), checkout_session_id=obj.get("id"))
        if funding is None:
            return "ignored: not a funding"
        if obj.get("payment_status") != "paid" or not obj.get("payment_intent"):
            # A delayed method: async_payment_succeeded follows. The payment is under way, so the
            # funding is no longer shown expired once its session's expiry has passed.
            if obj.get("payment_intent"):
                await Funding.update(
                    {Funding.payment_intent_id: obj["payment_intent"], Funding.updated_at: clock.now()}
                ).where(Funding.id == funding, Funding.status == FundingStatus.open.value)
            return "waiting: not paid yet"
        return await _ensure_credited(funding, obj["payment_intent"], gateway)
    if event_type in NEVER_PAID:
        # The session expired unpaid, or the bank refused the debit: nothing was received, so
        # nothing was (or will be) credited; an open funding is closed with the reason.
        funding = await _funding(obj.get("metadata"), checkout_session_id=obj.get("id"))
        if funding is None:
            return "ignored: not a funding"
        status, outcome = NEVER_PAID[event_type]
        await Funding.update({Funding.status: status.value, Funding.updated_at: clock.now()}).where(
            Funding.id == funding, Funding.status == FundingStatus.open.value
        )
        return outcome
    if event_type == "payment_intent.succeeded":
        funding = await _funding(obj.get("metadata"), payment_intent_id=obj.get("id"))
        if funding is None:
            return "ignored: not a funding"
        return await _ensure_credited(funding, obj["id"], gateway)
    if event_type == "charge.refunded":
        funding = await _funding_of_payment(obj.get("payment_intent"), gateway)
        if funding is None:
            return "ignored: not a funding"
        await _ensure_credited(funding, obj["payment_intent"], gateway)
        return await _refunded(funding, int(obj["amount_refunded"]))
    if event_type.startswith("charge.dispute."):
        return await _dispute(event_type, obj, gateway)
    return None


async def _funding(metadata: Any, **ids: Any) -> int | None:
    """The funding named by the object's metadata, else found by one of Stripe's ids."""
    raw = (metadata or {}).get("funding_id") if isinstance(metadata, dict) else None
    if raw and str(raw).isdigit():
        row = await Funding.select(Funding.id).where(Funding.id == int(raw)).first()
        if row:
            return row["id"]
    for column, value in ids.items():
        if value:
            row = await Funding.select(Funding.id).where(getattr(Funding, column) == value).first()
            if row:
                return row["id"]
    return None


async def _funding_of_payment(payment_intent_id: str | None, gateway: Gateway) -> int | None:
    if not payment_intent_id:
        return None
    found = await _funding(None, payment_intent_id=payment_intent_id)
    if found is None:  # its own events have not been processed yet: the intent's metadata names it
        payment = await gateway.payment(payment_intent_id)
        found = await _funding({"funding_id": payment.funding_id}) if payment.funding_id else None
    return found


async def _locked(funding_id: int) -> dict[str, Any]:
    """The funding row, locked until the transaction ends (SQLite: one writer at a time already)."""
    lock = "" if db.is_sqlite() else " FOR UPDATE"
    rows = await Funding.raw(f"SELECT * FROM funding WHERE id = {{}}{lock}", funding_id)  # noqa: S608
    return rows[0]


async def _ensure_credited(funding_id: int, payment_intent_id: str, gateway: Gateway) -> str:
    """Credit a paid funding to the advertiser's balance, once however often it is asked."""
    row = await Funding.select(Funding.status).where(Funding.id == funding_id).first()
    if row["status"] == FundingStatus.credited.value:
        return "already credited"
    payment = await gateway.payment(payment_intent_id)  # Stripe's word, outside any transaction
    if payment.status != "succeeded" or not payment.charge_id:
        raise NotYet(f"payment {payment_intent_id} is {payment.status}")
    if payment.fee_minor is None:
        raise NotYet(f"the charge of {payment_intent_id} has no balance transaction yet")
    async with db.transaction():
        funding = await _locked(funding_id)
        if funding["status"] == FundingStatus.credited.value:
            return "already credited"
        if payment.currency != funding["currency"] or payment.amount_minor != funding["amount_minor"]:
            raise ValueError(
                f"Stripe received {payment.amount_minor} {payment.currency} for funding {funding_id} "
                f"of {funding['amount_minor']} {funding['currency']}"
            )
        if payment.fee_currency != funding["currency"]:
            raise ValueError(f"the fee of funding {funding_id} is in {payment.fee_currency}")
        await postings.fund_advertiser_by_card(
            funding["advertiser"],
            payment.amount_minor,
            payment.fee_minor,
            funding["currency"],
            reference_id=funding_id,
            key=f"funding:{funding_id}:credited",
            vat=funding["vat_minor"],
        )
        now = clock.now()
        await invoices.invoice_top_up(funding, issued_at=now)  # its VAT is what the posting owes
        await Funding.update(
            {
                Funding.status: FundingStatus.credited.value,
                Funding.fee_minor: payment.fee_minor,
                Funding.payment_intent_id: payment.payment_intent_id,
                Funding.charge_id: payment.charge_id,
                Funding.receipt_url: payment.receipt_url,
                Funding.credited_at: now,
                Funding.updated_at: now,
            }
        ).where(Funding.id == funding_id)
    return "credited"


def _taken_back(funding: dict[str, Any]) -> int:
    """What refunds and chargebacks not won back have taken of a funding so far (its VAT shares follow it)."""
    return funding["refunded_minor"] + funding["disputed_minor"]


async def _withdraw(funding: dict[str, Any], amount: int, *, kind: str, key: str) -> bool:
    """Take `amount` of a funding back (refund, dispute), with its share of the VAT and a credit note for
    both; True if this call moved it."""
    before = _taken_back(funding)
    vat = invoices.vat_share(funding, before, before + amount)
    for attempt in range(RETRIES):
        try:
            posted = await postings.withdraw_funding(
                funding["advertiser"],
                amount,
                funding["currency"],
                kind=kind,
                reference_id=funding["id"],
                key=key,
                vat=vat,
            )
            if not posted.replayed:
                reason = "refund" if kind == "funding.refund" else "chargeback"
                await invoices.credit_note(funding, amount, vat, source_key=key, reason=reason)
            return not posted.replayed
        except InsufficientFunds:
            if attempt == RETRIES - 1:
                raise
            log.info("a balance changed while funding %s was withdrawn; splitting again", funding["id"])
    return False


async def _refunded(funding_id: int, cumulative: int) -> str:
    """Stripe's amount_refunded is cumulative: reverse only the part not reversed before."""
    async with db.transaction():
        funding = await _locked(funding_id)
        new = cumulative - funding["refunded_minor"]
        if new <= 0:
            return "refund already applied"
        await _withdraw(funding, new, kind="funding.refund", key=f"funding:{funding_id}:refunded:{cumulative}")
        await Funding.update({Funding.refunded_minor: cumulative, Funding.updated_at: clock.now()}).where(
            Funding.id == funding_id
        )
    await billing.pause_if_short(funding["advertiser"], funding["currency"])
    return "refunded"


async def _dispute(event_type: str, dispute: dict[str, Any], gateway: Gateway) -> str:
    funding_id = await _funding_of_payment(dispute.get("payment_intent"), gateway)
    if funding_id is None:
        return "ignored: not a funding"
    status = str(dispute.get("status", ""))
    if status.startswith("warning_"):
        return "inquiry: no funds moved"  # an inquiry withdraws nothing unless it becomes a dispute
    await _ensure_credited(funding_id, dispute["payment_intent"], gateway)
    amount, dispute_id = int(dispute["amount"]), dispute["id"]
    won = event_type == "charge.dispute.funds_reinstated" or (event_type == "charge.dispute.closed" and status == "won")
    async with db.transaction():
        funding = await _locked(funding_id)
        disputed = funding["disputed_minor"]
        # Funds leave when the dispute opens; a "closed" that arrives first implies that too.
        if await _withdraw(
            funding, amount, kind="funding.dispute", key=f"funding:{funding_id}:dispute:{dispute_id}:withdrawn"
        ):
            disputed += amount
        if won:
            key = f"funding:{funding_id}:dispute:{dispute_id}:reinstated"
            taken = funding["refunded_minor"] + disputed
            vat = invoices.vat_share(funding, taken - amount, taken)
            posted = await postings.reinstate_funding(
                funding["advertiser"], amount, funding["currency"], reference_id=funding_id, key=key, vat=vat
            )
            if not posted.replayed:
                await invoices.reinvoice(funding, amount, vat, source_key=key)
                disputed -= amount
        await Funding.update({Funding.disputed_minor: disputed, Funding.updated_at: clock.now()}).where(
            Funding.id == funding_id
        )
    if not won:
        await billing.pause_if_short(funding["advertiser"], funding["currency"])
    return "dispute won" if won else f"dispute {status or 'open'}"
