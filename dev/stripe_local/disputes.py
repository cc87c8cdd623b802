"""Disputes as the card networks make them: a dispute withdraws the amount and Stripe's fee at once; an
inquiry (`warning_needs_response`, a question from the issuer before any chargeback) withdraws nothing,
and ends as `warning_closed` or escalates into a dispute, which then withdraws the funds."""

from __future__ import annotations

from typing import Any

from dev.stripe_local import forms
from dev.stripe_local.objects import balance_transaction
from dev.stripe_local.store import Store, StripeError

CLOSED = ("won", "lost", "warning_closed")
INQUIRY = ("warning_needs_response", "warning_under_review")


def _open_dispute(store: Store, charge_id: str) -> dict[str, Any] | None:
    for obj in store.objects.values():
        if obj["object"] == "dispute" and obj["charge"] == charge_id and obj["status"] not in CLOSED:
            return obj
    return None


def blocks_refund(store: Store, charge_id: str) -> bool:
    """A charged-back charge cannot be refunded; one under an inquiry can (is_charge_refundable)."""
    dispute = _open_dispute(store, charge_id)
    return dispute is not None and not dispute["is_charge_refundable"]


def _withdraw(store: Store, dispute: dict[str, Any]) -> None:
    txn = balance_transaction(
        store,
        amount=-dispute["amount"],
        currency=dispute["currency"],
        fee=store.config.dispute_fee_minor,
        kind="adjustment",
        category="dispute",
        source=dispute["id"],
        fee_description="Dispute fee",
        description=f"Chargeback withdrawal for {dispute['charge']}",
    )
    dispute["balance_transactions"] = [*dispute["balance_transactions"], txn]
    dispute["is_charge_refundable"] = False


def open_dispute(
    store: Store, charge_id: str, amount: int | None, reason: str, *, inquiry: bool = False
) -> dict[str, Any]:
    """Test control: the buyer's bank disputes a charge (the amount and Stripe's dispute fee leave the balance),
    or, with `inquiry`, only asks about it (nothing leaves)."""
    charge = store.get(charge_id, "charge")
    if charge["status"] != "succeeded":
        raise StripeError(400, f"Charge {charge_id} has not succeeded; it cannot be disputed.")
    if _open_dispute(store, charge_id) is not None:
        raise StripeError(400, f"Charge {charge_id} already has an open dispute.")
    amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
    if not 0 < amount <= charge["amount"]:
        raise StripeError(400, "The dispute amount must be positive and at most the charge's amount.", param="amount")
    dispute = store.add(
        {
            "id": store.new_id("dp_"),
            "object": "dispute",
            "amount": amount,
            "balance_transactions": [],
            "charge": charge_id,
            "created": store.now(),
            "currency": charge["currency"],
            "evidence": {},
            "evidence_details": {
                "due_by": store.now() + 7 * 86400,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": inquiry,
            "livemode": False,
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "warning_needs_response" if inquiry else "needs_response",
        }
    )
    charge["disputed"] = True
    if not inquiry:
        _withdraw(store, dispute)
    store.emit("charge.dispute.created", dispute)
    if not inquiry:
        store.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def update_dispute(store: Store, dispute_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/disputes/{id}: evidence and metadata; `submit=true` sends the evidence (→ under review)."""
    forms.check_known(params, {"evidence", "metadata", "submit"})
    dispute = store.get(dispute_id, "dispute")
    if dispute["status"] in CLOSED:
        raise StripeError(400, f"This dispute is already closed ({dispute['status']}).")
    previous = {"status": dispute["status"]}
    if isinstance(params.get("evidence"), dict):
        dispute["evidence"] = {**dispute["evidence"], **params["evidence"]}
        dispute["evidence_details"]["has_evidence"] = True
    if params.get("metadata") is not None:
        dispute["metadata"] = forms.string_map(params["metadata"], "metadata")
    if str(params.get("submit", "")).lower() == "true":
        dispute["status"] = "warning_under_review" if dispute["status"] in INQUIRY else "under_review"
        dispute["evidence_details"]["submission_count"] += 1
    store.emit("charge.dispute.updated", dispute, previous)
    return dispute


def escalate(store: Store, dispute_id: str) -> dict[str, Any]:
    """Test control: the issuer turns an inquiry into a chargeback; now the funds leave."""
    dispute = store.get(dispute_id, "dispute")
    if dispute["status"] not in INQUIRY:
        raise StripeError(400, f"Dispute {dispute_id} is not an open inquiry ({dispute['status']}).")
    previous = {"status": dispute["status"]}
    dispute["status"] = "needs_response"
    _withdraw(store, dispute)
    store.emit("charge.dispute.updated", dispute, previous)
    store.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def close_dispute(store: Store, dispute_id: str, outcome: str) -> dict[str, Any]:
    """Test control: the bank decides. Won: the amount comes back (the dispute fee does not); lost: it stays
    gone; an inquiry closes as warning_closed, having moved nothing."""
    dispute = store.get(dispute_id, "dispute")
    if dispute["status"] in CLOSED:
        raise StripeError(400, f"Dispute {dispute_id} is already closed ({dispute['status']}).")
    allowed = ("warning_closed",) if dispute["status"] in INQUIRY else ("won", "lost")
    if outcome not in allowed:
        raise StripeError(400, f"outcome must be {' or '.join(allowed)} for this dispute", param="outcome")
    previous = {"status": dispute["status"]}
    dispute["status"] = outcome
    if outcome == "won":
        txn = balance_transaction(
            store,
            amount=dispute["amount"],
            currency=dispute["currency"],
            fee=0,
            kind="adjustment",
            category="dispute_reversal",
            source=dispute_id,
            description=f"Chargeback reversal for {dispute['charge']}",
        )
        dispute["balance_transactions"] = [*dispute["balance_transactions"], txn]
        store.emit("charge.dispute.funds_reinstated", dispute)
    store.emit("charge.dispute.closed", dispute, previous)
    return dispute
