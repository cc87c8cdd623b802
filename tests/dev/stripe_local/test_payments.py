"""Paying on the stand-in's Checkout page makes what Stripe makes (PaymentIntent, Charge with its receipt, a balance
transaction with the card fee) and its events; refunds and disputes move money back the way Stripe does."""

from __future__ import annotations

import uuid

import httpx
import pytest
import stripe

from tests.dev.stripe_local.helpers import events_for, new_session, pay


def _paid(stripe_local, amount: int = 50000):
    session = new_session(stripe_local, amount)
    answer = pay(stripe_local, session)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"http://affnet.test/billing/return?session_id={session.id}"
    session = stripe_local.client().v1.checkout.sessions.retrieve(
        session.id, {"expand": ["payment_intent.latest_charge.balance_transaction"]}
    )
    return session, session.payment_intent.latest_charge


def test_the_checkout_page_shows_the_amount_and_escapes_names(stripe_local):
    session = stripe_local.client().v1.checkout.sessions.create(
        {
            "mode": "payment",
            "success_url": "http://affnet.test/ok",
            "cancel_url": "http://affnet.test/no",
            "line_items": [
                {
                    "price_data": {
                        "currency": "eur",
                        "unit_amount": 123456,
                        "product_data": {"name": "<script>alert(1)</script>"},
                    },
                    "quantity": 1,
                }
            ],
        }
    )
    page = httpx.get(session.url)
    assert "1,234.56 EUR" in page.text and ">Pay" in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text


def test_pay_completes_the_session_with_a_charge_and_its_fee(stripe_local):
    session, charge = _paid(stripe_local, 50000)
    assert (session.status, session.payment_status) == ("complete", "paid")
    intent = session.payment_intent
    assert intent.id.startswith("pi_") and intent.status == "succeeded" and intent.amount_received == 50000
    assert intent.metadata["funding_id"] == "7"  # from payment_intent_data[metadata]
    assert charge.id.startswith("ch_") and charge.paid and charge.amount == 50000 and charge.currency == "eur"
    txn = charge.balance_transaction
    # The fee rule: 1.5 % of 500.00 EUR = 7.50, plus 0.25.
    assert txn.id.startswith("txn_") and (txn.amount, txn.fee, txn.net) == (50000, 775, 49225)
    assert txn.fee_details[0].amount == 775 and txn.fee_details[0].type == "stripe_fee"
    assert httpx.get(charge.receipt_url).status_code == 200
    assert stripe_local.client().v1.balance_transactions.retrieve(txn.id).net == 49225


def test_the_fee_rounds_half_up_to_the_cent(stripe_local):
    _, charge = _paid(stripe_local, 1234)  # 1.5 % of 12.34 = 0.1851 → 0.19, plus 0.25
    assert charge.balance_transaction.fee == 44


def test_paying_emits_the_three_events_once_even_when_pay_is_clicked_twice(stripe_local):
    session = new_session(stripe_local)
    pay(stripe_local, session)
    again = httpx.post(session.url)
    assert again.status_code == 303
    session = stripe_local.client().v1.checkout.sessions.retrieve(session.id)
    intent = stripe_local.client().v1.payment_intents.retrieve(session.payment_intent)
    types = sorted(e["type"] for e in events_for(stripe_local, intent.id))
    assert types == ["charge.succeeded", "checkout.session.completed", "payment_intent.succeeded"]
    completed = stripe_local.client().v1.events.list({"type": "checkout.session.completed", "limit": 100})
    event = next(e for e in completed.data if e.data.object.id == session.id)
    assert event.id.startswith("evt_") and event.object == "event" and event.livemode is False
    assert event.api_version.startswith("2026-10-28") and event.data.object.metadata["funding_id"] == "7"


def test_cancel_returns_to_cancel_url_without_paying(stripe_local):
    session = new_session(stripe_local)
    answer = httpx.post(f"{session.url}/cancel")
    assert answer.status_code == 303 and answer.headers["location"] == "http://affnet.test/billing"
    assert stripe_local.client().v1.checkout.sessions.retrieve(session.id).status == "open"


def test_events_list_newest_first_with_a_limit(stripe_local):
    _paid(stripe_local)
    listed = stripe_local.client().v1.events.list({"limit": 2})
    assert len(listed.data) == 2 and listed.has_more
    assert listed.data[0].created >= listed.data[1].created
    assert stripe_local.client().v1.events.retrieve(listed.data[0].id).type == listed.data[0].type


def test_partial_then_full_refund_emit_charge_refunded_with_the_cumulative_amount(stripe_local):
    _, charge = _paid(stripe_local, 50000)
    client = stripe_local.client()
    first = client.v1.refunds.create({"charge": charge.id, "amount": 20000}, {"idempotency_key": str(uuid.uuid4())})
    assert first.id.startswith("re_") and first.status == "succeeded" and first.amount == 20000
    txn = client.v1.balance_transactions.retrieve(first.balance_transaction)
    assert (txn.amount, txn.fee, txn.net) == (-20000, 0, -20000)
    rest = client.v1.refunds.create({"payment_intent": charge.payment_intent}, {"idempotency_key": str(uuid.uuid4())})
    assert rest.amount == 30000
    refunded = [e for e in events_for(stripe_local, charge.id) if e["type"] == "charge.refunded"]
    newest = refunded[0]["data"]["object"]
    assert [e["data"]["object"]["amount_refunded"] for e in refunded] == [50000, 20000]
    assert newest["refunded"] is True and [r["id"] for r in newest["refunds"]["data"]] == [rest.id, first.id]
    assert refunded[1]["data"]["previous_attributes"] == {"amount_refunded": 0, "refunded": False}
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create({"charge": charge.id}, {"idempotency_key": str(uuid.uuid4())})
    assert again.value.code == "charge_already_refunded"


def test_a_refund_larger_than_what_is_left_is_refused(stripe_local):
    _, charge = _paid(stripe_local, 50000)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_local.client().v1.refunds.create({"charge": charge.id, "amount": 50001})
    assert refused.value.error.param == "amount"
    assert stripe_local.client().v1.charges.retrieve(charge.id).amount_refunded == 0


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_dispute_opens_and_closes_won_or_lost(stripe_local, outcome):
    _, charge = _paid(stripe_local, 50000)
    dispute = stripe_local.control("POST", f"/_local/charges/{charge.id}/dispute").json()
    assert dispute["id"].startswith("dp_") and dispute["object"] == "dispute"
    assert (dispute["amount"], dispute["status"], dispute["charge"]) == (50000, "needs_response", charge.id)
    withdrawal = dispute["balance_transactions"][0]
    assert (withdrawal["amount"], withdrawal["fee"], withdrawal["net"]) == (-50000, 2000, -52000)
    assert stripe_local.client().v1.charges.retrieve(charge.id).disputed is True
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_local.client().v1.refunds.create({"charge": charge.id})
    assert refused.value.code == "charge_disputed"
    closed = stripe_local.control("POST", f"/_local/disputes/{dispute['id']}/close", outcome=outcome).json()
    assert closed["status"] == outcome
    assert len(closed["balance_transactions"]) == (2 if outcome == "won" else 1)
    types = [e["type"] for e in events_for(stripe_local, charge.id)]
    assert "charge.dispute.created" in types and "charge.dispute.closed" in types
    assert stripe_local.client().v1.disputes.retrieve(dispute["id"]).status == outcome
