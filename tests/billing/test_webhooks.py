"""Stripe's events credit a funding exactly once, whatever their number and order; refunds and
disputes take back exactly what they reverse; forgeries change nothing. On both engines."""

from __future__ import annotations

import json
import time

import pytest

from server.billing.tables import Funding
from server.campaigns.tables import Campaign
from server.ledger import engine
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.stripe_events import service as stripe_events
from server.stripe_events.tables import StripeEvent
from tests.billing.helpers import FakeStripe, advertiser, deliver, event, funded, sign


@pytest.fixture
def fake() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
def secret(settings) -> str:
    return settings.stripe_webhook_secret


async def process_all(fake: FakeStripe) -> list[str]:
    rows = (
        await StripeEvent.select(StripeEvent.event_id)
        .where(StripeEvent.processed_at.is_null())
        .order_by(StripeEvent.id)
    )
    return [await stripe_events.process(r["event_id"], fake) for r in rows]


async def balance(who, currency: str = "EUR") -> int:
    return await ledger.balance(K.advertiser_balance, currency, who.id)


async def credits() -> int:
    return await LedgerTxn.count().where(LedgerTxn.kind == "funding")


# --- signatures ----------------------------------------------------------------------------------


async def test_a_forged_signature_is_refused_and_nothing_is_recorded_or_credited(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    evt = paid.checkout_completed()
    forged = await deliver(client, evt, "whsec_someone_else")
    assert forged.status_code == 400
    tampered_body = json.dumps({**evt, "id": "evt_other"}).encode()
    tampered = await deliver(client, evt, secret, body=tampered_body, signature=sign(json.dumps(evt).encode(), secret))
    assert tampered.status_code == 400
    missing = await client.post("/stripe/webhook", content=json.dumps(evt).encode())
    assert missing.status_code == 400
    assert await StripeEvent.count() == 0
    assert await process_all(fake) == []
    assert await balance(who) == 0 and await credits() == 0


async def test_a_stale_signature_is_refused(client, fake, secret):
    who = await advertiser()
    evt = (await funded(fake, who)).checkout_completed()
    body = json.dumps(evt).encode()
    stale = await deliver(client, evt, secret, signature=sign(body, secret, int(time.time()) - 3600))
    assert stale.status_code == 400
    assert await StripeEvent.count() == 0


async def test_a_malformed_payload_is_refused_even_when_signed(client, secret):
    body = b"{not json"
    response = await client.post("/stripe/webhook", content=body, headers={"stripe-signature": sign(body, secret)})
    assert response.status_code == 400
    assert await StripeEvent.count() == 0


async def test_a_connected_accounts_payment_event_never_credits_a_funding(client, settings, fake):
    # A connected account's own checkout, naming an affnet funding in its metadata, arriving (properly
    # signed) on the Connect endpoint: it is no payment to affnet.
    who = await advertiser()
    evt = {**(await funded(fake, who)).checkout_completed(), "account": "acct_publisher"}
    body = json.dumps(evt).encode()
    answer = await client.post(
        "/stripe/connect-webhook",
        content=body,
        headers={"stripe-signature": sign(body, settings.stripe_connect_webhook_secret)},
    )
    assert answer.status_code == 200
    assert await process_all(fake) == ["ignored: a connected account's event"]
    assert await balance(who) == 0 and await credits() == 0 and fake.asked == 0


# --- crediting -----------------------------------------------------------------------------------


async def test_the_same_event_five_times_credits_once(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    evt = paid.checkout_completed()
    responses = [await deliver(client, evt, secret) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert [r.json()["duplicate"] for r in responses] == [False, True, True, True, True]
    assert await StripeEvent.count() == 1
    assert await process_all(fake) == ["credited"]
    await deliver(client, evt, secret)  # after processing too
    assert await process_all(fake) == []
    assert await balance(who) == 50_000 and await credits() == 1
    funding = await Funding.select().first()
    assert (funding["status"], funding["fee_minor"], funding["charge_id"]) == ("credited", 775, paid.charge_id)
    assert funding["receipt_url"].endswith(paid.charge_id)
    assert await ledger.check() == []


async def test_payment_intent_first_then_checkout_each_twice_credit_once(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    for evt in (
        paid.payment_succeeded(),
        paid.payment_succeeded(),
        paid.checkout_completed(),
        paid.checkout_completed(),
    ):
        assert (await deliver(client, evt, secret)).status_code == 200
    assert await process_all(fake) == ["credited", "already credited", "already credited", "already credited"]
    assert await balance(who) == 50_000 and await credits() == 1
    assert await ledger.check() == []


async def test_the_network_absorbs_stripes_fee_and_funding_is_conserved(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    await deliver(client, paid.checkout_completed(), secret)
    await process_all(fake)
    # charge 500.00 = advertiser credit 500.00; Stripe holds 492.25 and kept 7.75 as its fee
    assert await balance(who) == 50_000
    assert await ledger.balance(K.stripe_clearing, "EUR") == -(50_000 - 775)
    assert await ledger.balance(K.processing_fees, "EUR") == -775
    assert await ledger.check() == []


async def test_a_refund_event_before_the_payment_events_still_credits_then_refunds(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    for evt in (paid.charge_refunded(50_000), paid.checkout_completed(), paid.payment_succeeded()):
        await deliver(client, evt, secret)
    assert await process_all(fake) == ["refunded", "already credited", "already credited"]
    assert await balance(who) == 0 and await credits() == 1
    assert await ledger.check() == []


async def test_an_unpaid_completed_session_waits_and_unknown_events_are_ignored(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    unpaid = paid.checkout_completed()
    unpaid["data"]["object"]["payment_status"] = "unpaid"
    await deliver(client, unpaid, secret)
    await deliver(client, event("customer.created", {"id": "cus_1", "object": "customer"}), secret)
    assert await process_all(fake) == ["waiting: not paid yet", "ignored"]
    assert await balance(who) == 0


# --- refunds and disputes ------------------------------------------------------------------------


async def test_partial_refunds_reverse_only_the_new_part_once_in_any_order(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    await deliver(client, paid.checkout_completed(), secret)
    await process_all(fake)
    # Cumulative 300.00 arrives before cumulative 100.00, and each twice.
    for evt in (paid.charge_refunded(30_000), paid.charge_refunded(10_000)):
        await deliver(client, evt, secret, times=2)
    assert await process_all(fake) == ["refunded", "refund already applied"]
    assert await balance(who) == 20_000
    assert (await Funding.select(Funding.refunded_minor).first())["refunded_minor"] == 30_000
    await deliver(client, paid.charge_refunded(50_000), secret)  # the rest
    assert await process_all(fake) == ["refunded"]
    assert await balance(who) == 0
    # The fee stays a network cost: Stripe does not return it on refunds.
    assert await ledger.balance(K.stripe_clearing, "EUR") == 775
    assert await ledger.check() == []


async def test_a_refund_larger_than_the_balance_left_becomes_a_receivable_the_next_funding_pays(client, fake, secret):
    who = await advertiser()
    first = await funded(fake, who, "100.00")
    await deliver(client, first.checkout_completed(), secret)
    await process_all(fake)
    # The advertiser spends 70.00 of it (an approved conversion, here a direct posting).
    spend = [
        engine.Line(await ledger.account(K.advertiser_balance, "EUR", who.id), -7_000, "EUR"),
        engine.Line(await ledger.account(K.network_revenue, "EUR"), 7_000, "EUR"),
    ]
    await engine.post(kind="earning", idempotency_key="spend-1", lines=spend, reference_type="manual", reference_id=1)
    await deliver(client, first.charge_refunded(10_000), secret)
    assert await process_all(fake) == ["refunded"]
    assert await balance(who) == 0  # never below zero (I4)
    assert await ledger.balance(K.advertiser_receivable, "EUR", who.id) == -7_000
    second = await funded(fake, who, "100.00")
    await deliver(client, second.payment_succeeded(), secret)
    await process_all(fake)
    assert await ledger.balance(K.advertiser_receivable, "EUR", who.id) == 0
    assert await balance(who) == 3_000
    assert await ledger.check() == []


async def test_a_lost_dispute_withdraws_the_funding_once(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    await deliver(client, paid.checkout_completed(), secret)
    for evt in (
        paid.dispute("charge.dispute.created", "needs_response"),
        paid.dispute("charge.dispute.closed", "lost"),
    ):
        await deliver(client, evt, secret, times=2)
    assert await process_all(fake) == ["credited", "dispute needs_response", "dispute lost"]
    assert await balance(who) == 0
    assert (await Funding.select(Funding.disputed_minor).first())["disputed_minor"] == 50_000
    assert await ledger.check() == []


async def test_a_won_dispute_gives_the_money_back_even_when_closed_arrives_first(client, fake, secret):
    who = await advertiser()
    paid = await funded(fake, who)
    for evt in (
        paid.checkout_completed(),
        paid.dispute("charge.dispute.closed", "won"),
        paid.dispute("charge.dispute.created", "needs_response"),
    ):
        await deliver(client, evt, secret)
    assert await process_all(fake) == ["credited", "dispute won", "dispute needs_response"]
    assert await balance(who) == 50_000
    assert (await Funding.select(Funding.disputed_minor).first())["disputed_minor"] == 0
    assert await LedgerTxn.count().where(LedgerTxn.kind == "funding.dispute") == 1
    assert await LedgerTxn.count().where(LedgerTxn.kind == "funding.reinstated") == 1
    assert await ledger.check() == []


async def test_a_withdrawal_that_empties_the_balance_pauses_the_advertisers_campaigns(client, fake, secret, settings):
    from tests.conversions.factories import campaign_and_click

    setup, _, _ = await campaign_and_click(settings, client)
    from server.accounts.identity import CurrentUser
    from server.accounts.tables import Role

    who = CurrentUser(id=setup.advertiser.id, email="adv@example", role=Role.advertiser, via="test")
    paid = await funded(fake, who)
    await deliver(client, paid.checkout_completed(), secret)
    await process_all(fake)
    assert (await Campaign.select(Campaign.status).first())["status"] == "active"
    await deliver(client, paid.dispute("charge.dispute.created", "needs_response"), secret)
    await process_all(fake)
    campaign = await Campaign.select(Campaign.status, Campaign.status_reason).first()
    assert campaign["status"] == "paused" and "dispute" in campaign["status_reason"]
    assert await ledger.check() == []
