"""Top-ups where Stripe is less simple than "paid at once": a Checkout Session that expires by itself,
a SEPA debit that completes unpaid and settles (or fails) days later, and a dispute inquiry that moves
no money. Each through the real SDK, signed webhooks and the worker's processing, with the ledger
checked after."""

from __future__ import annotations

from dataclasses import replace

import httpx

from server.billing import service as billing
from server.billing import stripe_api
from server.billing.tables import Funding
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.stripe_events import service as stripe_events
from server.stripe_events.tables import StripeEvent
from tests.billing.helpers import advertiser
from tests.billing.test_with_stripe_local import deliver_new, event_ids, process, start_funding
from tests.stripe_fixtures import StripeLocal, deliver


async def _funding(funding_id: int) -> dict:
    return await Funding.select().where(Funding.id == funding_id).first()


async def test_an_expired_checkout_session_marks_the_funding_expired_and_credits_nothing(
    client, settings, new_stripe_account
):
    local: StripeLocal = new_stripe_account()
    local_settings = replace(settings, stripe_api_base=local.base_url)
    who = await advertiser()
    async with stripe_api.gateway(local_settings) as gateway:
        url = await billing.start_funding(who, {"amount": "500.00", "currency": "EUR"}, gateway, settings.base_url)
    funding = await Funding.select().first()
    assert funding["status"] == "open" and url.startswith(local.base_url)
    session = local.client().v1.checkout.sessions.retrieve(funding["checkout_session_id"])
    assert session.expires_at - session.created == 24 * 3600  # Stripe's default

    # A day later nobody paid: Stripe expires the session by itself and says so.
    local.control("POST", "/_local/clock/advance", seconds=str(24 * 3600))
    assert local.client().v1.checkout.sessions.retrieve(session.id).status == "expired"
    async with httpx.AsyncClient(timeout=10) as browser:  # too late to pay
        assert (await browser.post(url, data={"email": "late@example.com"})).status_code == 400
    assert await deliver_new(client, local, set()) != []
    async with stripe_api.gateway(local_settings) as gateway:
        outcomes = [
            await stripe_events.process(r["event_id"], gateway)
            for r in await StripeEvent.select(StripeEvent.event_id).order_by(StripeEvent.id)
        ]
    assert outcomes == ["expired"]
    assert (await _funding(funding["id"]))["status"] == "expired"
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 0
    assert await ledger.check() == []


async def test_an_async_payment_is_credited_only_when_it_succeeds(client, settings, stripe_local):
    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    _, funding = await start_funding(client, who.email)
    paid = stripe_local.control(
        "POST", f"/_local/checkout/sessions/{funding['checkout_session_id']}/pay", payment_method="sepa_debit"
    ).json()
    assert (paid["status"], paid["payment_status"]) == ("complete", "unpaid")

    # Completed, but unpaid: the debit is still on its way. Nothing is credited, however often it is told.
    first = await deliver_new(client, stripe_local, seen, times=2)
    assert "credited" not in await process(settings)
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 0
    assert (await _funding(funding["id"]))["status"] == "open"
    back = await client.get(f"/advertiser/billing/return?session_id={funding['checkout_session_id']}")
    assert back.status_code == 200 and "€500.00 was added" not in back.text

    stripe_local.control("POST", f"/_local/payment_intents/{paid['payment_intent']}/settle", outcome="succeeded")
    new = await deliver_new(client, stripe_local, seen, times=2)
    types = [(await StripeEvent.select(StripeEvent.type).where(StripeEvent.event_id == e).first())["type"] for e in new]
    assert "checkout.session.async_payment_succeeded" in types
    assert (await process(settings)).count("credited") == 1
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 50_000
    assert (await _funding(funding["id"]))["status"] == "credited"
    for event_id in first + new:  # every event of this payment again: still credited once
        await deliver(client, stripe_local, event_id)
    await process(settings)
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 50_000
    assert await ledger.check() == []


async def test_a_failed_async_payment_marks_the_funding_failed(client, settings, stripe_local):
    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    _, funding = await start_funding(client, who.email, "75.00")
    paid = stripe_local.control(
        "POST", f"/_local/checkout/sessions/{funding['checkout_session_id']}/pay", payment_method="sepa_debit"
    ).json()
    stripe_local.control("POST", f"/_local/payment_intents/{paid['payment_intent']}/settle", outcome="failed")
    await deliver_new(client, stripe_local, seen)
    outcomes = await process(settings)
    assert "payment failed" in outcomes and "credited" not in outcomes
    assert (await _funding(funding["id"]))["status"] == "failed"
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 0
    assert await ledger.check() == []


async def test_a_dispute_inquiry_withdraws_nothing(client, settings, stripe_local):
    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    _, funding = await start_funding(client, who.email)
    stripe_local.control("POST", f"/_local/checkout/sessions/{funding['checkout_session_id']}/pay")
    await deliver_new(client, stripe_local, seen)
    await process(settings)
    charge_id = (await _funding(funding["id"]))["charge_id"]
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 50_000
    txns = await LedgerTxn.count()

    inquiry = stripe_local.control("POST", f"/_local/charges/{charge_id}/dispute", inquiry="true").json()
    assert inquiry["status"] == "warning_needs_response"
    stripe_local.client().v1.disputes.update(inquiry["id"], {"submit": True})  # evidence sent: under review
    stripe_local.control("POST", f"/_local/disputes/{inquiry['id']}/close", outcome="warning_closed")
    await deliver_new(client, stripe_local, seen, times=2)
    assert set(await process(settings)) == {"inquiry: no funds moved"}
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 50_000
    assert await LedgerTxn.count() == txns
    row = await _funding(funding["id"])
    assert (row["status"], row["disputed_minor"], row["refunded_minor"]) == ("credited", 0, 0)

    # An inquiry that escalates is a dispute: now, and only now, the money goes.
    second = stripe_local.control("POST", f"/_local/charges/{charge_id}/dispute", inquiry="true").json()
    stripe_local.control("POST", f"/_local/disputes/{second['id']}/escalate")
    await deliver_new(client, stripe_local, seen)
    await process(settings)
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 0
    assert (await _funding(funding["id"]))["disputed_minor"] == 50_000
    assert await ledger.check() == []
