"""Where the stand-in used to be kinder than Stripe, it now behaves as Stripe does: connected accounts'
events carry `account` and go only to the Connect endpoint, signed with its secret; transfers need
available funds (card payments stay pending for a while); Checkout Sessions expire by themselves;
SEPA debits complete unpaid and settle later; inquiries withdraw nothing; a transfer's reversals are
paged."""

from __future__ import annotations

import uuid

import httpx
import pytest
import stripe

from dev.stripe_local.payments import CARD
from tests.dev.stripe_local.helpers import Receiver, events_for, new_session, wait_until


def _key() -> dict[str, str]:
    return {"idempotency_key": f"test-{uuid.uuid4()}"}


def test_connect_events_carry_account_and_go_only_to_the_connect_endpoint(stripe_local):
    platform, connect = Receiver(), Receiver()
    stripe_local.control("POST", "/_local/webhook_endpoint", url=platform.url)
    stripe_local.control("POST", "/_local/webhook_endpoint", url=connect.url, connect="true")
    try:
        account = stripe_local.client().v1.accounts.create({"type": "express"}, _key())
        stripe_local.control("POST", f"/_local/accounts/{account.id}/complete_onboarding")
        wait_until(lambda: connect.received, "the Connect endpoint's delivery")
        [(headers, body)] = connect.received
        event = stripe.Webhook.construct_event(body, headers["stripe-signature"], stripe_local.connect_webhook_secret)
        assert (event.type, event.account, event.data.object.id) == ("account.updated", account.id, account.id)
        with pytest.raises(stripe.SignatureVerificationError):  # not the platform endpoint's secret
            stripe.Webhook.construct_event(body, headers["stripe-signature"], stripe_local.webhook_secret)
        assert not [b for _, b in platform.received if account.id.encode() in b]
    finally:
        for connect_flag in ("false", "true"):
            stripe_local.control("POST", "/_local/webhook_endpoint", url="", connect=connect_flag)
        platform.close()
        connect.close()


def test_a_transfer_needs_available_funds_and_card_payments_become_available_after_the_delay(new_stripe_account):
    local = new_stripe_account("--available-delay", "3600")
    client = local.client()
    account = _ready_account(local)
    local.fund_platform(50_000, card=CARD)  # pending for an hour
    balance = client.v1.balance.retrieve()
    assert [(a.amount, a.currency) for a in balance.available] == [(0, "eur")]
    assert [(p.amount, p.currency) for p in balance.pending] == [(50_000 - 775, "eur")]

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.transfers.create(
            {"amount": 10_000, "currency": "eur", "destination": account}, {"idempotency_key": "payout-1"}
        )
    assert (refused.value.http_status, refused.value.code, refused.value.error.type) == (
        400,
        "balance_insufficient",
        "invalid_request_error",
    )
    assert "insufficient available funds" in refused.value.user_message

    local.control("POST", "/_local/clock/advance", seconds="3600")
    assert local.available() == 50_000 - 775
    with pytest.raises(stripe.InvalidRequestError):  # the refusal is saved under its key, as on Stripe
        client.v1.transfers.create(
            {"amount": 10_000, "currency": "eur", "destination": account}, {"idempotency_key": "payout-1"}
        )
    transfer = client.v1.transfers.create(
        {"amount": 10_000, "currency": "eur", "destination": account}, {"idempotency_key": "payout-1:again"}
    )
    assert transfer.amount == 10_000 and local.available() == 40_000 - 775


def _ready_account(local) -> str:
    account = local.client().v1.accounts.create(
        {"type": "express", "capabilities": {"transfers": {"requested": True}}}, _key()
    )
    local.control("POST", f"/_local/accounts/{account.id}/complete_onboarding")
    return account.id


def test_checkout_sessions_expire_by_themselves_within_stripes_bounds(new_stripe_account):
    local = new_stripe_account()
    now = int(local.control("POST", "/_local/clock/advance", seconds="0").json()["now"])
    for too_soon_or_late in (now + 29 * 60, now + 24 * 3600 + 60):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            new_session(local, expires_at=too_soon_or_late)
        assert refused.value.param == "expires_at"
    # A minute more than the least Stripe allows: this machine may take seconds between two requests.
    default, short = new_session(local), new_session(local, expires_at=now + 1860)
    assert default.expires_at - default.created == 24 * 3600 and short.expires_at == now + 1860

    local.control("POST", "/_local/clock/advance", seconds="1860")
    assert local.client().v1.checkout.sessions.retrieve(short.id).status == "expired"
    assert local.client().v1.checkout.sessions.retrieve(default.id).status == "open"
    [expired] = [e for e in events_for(local, short.id) if e["type"] == "checkout.session.expired"]
    assert expired["data"]["object"]["status"] == "expired" and "account" not in expired
    page = httpx.post(short.url or f"{local.base_url}/pay/{short.id}", data={"email": "a@example.com"})
    assert page.status_code == 400 and "no longer open" in page.text

    local.control("POST", "/_local/clock/advance", seconds=str(24 * 3600))
    assert local.client().v1.checkout.sessions.retrieve(default.id).status == "expired"


def test_a_sepa_debit_completes_unpaid_then_succeeds_or_fails(stripe_local):
    for outcome in ("succeeded", "failed"):
        session = new_session(stripe_local)
        paid = stripe_local.control("POST", f"/_local/checkout/sessions/{session.id}/pay", payment_method="sepa_debit")
        assert (paid.json()["status"], paid.json()["payment_status"]) == ("complete", "unpaid")
        intent_id = paid.json()["payment_intent"]
        assert stripe_local.client().v1.payment_intents.retrieve(intent_id).status == "processing"
        stripe_local.control("POST", f"/_local/payment_intents/{intent_id}/settle", outcome=outcome)
        types = [e["type"] for e in reversed(events_for(stripe_local, session.id))]
        assert types == ["checkout.session.completed", f"checkout.session.async_payment_{outcome}"]
        settled = stripe_local.client().v1.checkout.sessions.retrieve(session.id)
        assert settled.payment_status == ("paid" if outcome == "succeeded" else "unpaid")


def test_an_inquiry_withdraws_nothing_until_it_escalates(new_stripe_account):
    local = new_stripe_account()
    session_id = local.fund_platform(10_000)
    charge = (
        local.client()
        .v1.payment_intents.retrieve(local.client().v1.checkout.sessions.retrieve(session_id).payment_intent)
        .latest_charge
    )
    before = local.available()
    inquiry = local.control("POST", f"/_local/charges/{charge}/dispute", inquiry="true").json()
    assert inquiry["status"] == "warning_needs_response" and inquiry["balance_transactions"] == []
    submitted = local.client().v1.disputes.update(
        inquiry["id"], {"evidence": {"product_description": "ads"}, "submit": True}
    )
    assert submitted.status == "warning_under_review" and local.available() == before
    closed = local.control("POST", f"/_local/disputes/{inquiry['id']}/close", outcome="warning_closed").json()
    assert closed["status"] == "warning_closed" and local.available() == before

    second = local.control("POST", f"/_local/charges/{charge}/dispute", inquiry="true").json()
    escalated = local.control("POST", f"/_local/disputes/{second['id']}/escalate").json()
    assert escalated["status"] == "needs_response"
    assert local.available() == before - 10_000 - 2_000  # the amount and the dispute fee


def test_a_transfers_reversals_are_paged_and_its_event_carries_the_ten_newest(stripe_local):
    client = stripe_local.client()
    transfer = client.v1.transfers.create(
        {"amount": 5_000, "currency": "eur", "destination": _ready_account(stripe_local)}, _key()
    )
    made = [client.v1.transfers.reversals.create(transfer.id, {"amount": 100}, _key()).id for _ in range(12)]
    event = next(e for e in events_for(stripe_local, transfer.id) if e["type"] == "transfer.reversed")
    embedded = event["data"]["object"]["reversals"]
    assert [r["id"] for r in embedded["data"]] == made[::-1][:10] and embedded["has_more"] is True
    first = client.v1.transfers.reversals.list(transfer.id, {"limit": 5})
    assert [r.id for r in first.data] == made[::-1][:5] and first.has_more
    assert [r.id for r in first.auto_paging_iter()] == made[::-1]
    last = client.v1.transfers.reversals.list(transfer.id, {"limit": 5, "starting_after": made[2]})
    assert [r.id for r in last.data] == made[1::-1] and not last.has_more
