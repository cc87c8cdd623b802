"""The whole funding flow against the local Stripe stand-in, through the real SDK and signed webhooks:
the return page never credits, the webhook does (through the worker on a real Redis), every POST
to Stripe carries an idempotency key, refunds and disputes made at Stripe reverse, and another
advertiser never sees the funding."""

from __future__ import annotations

import re

import httpx

from server.billing import stripe_api
from server.billing.tables import Funding
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.stripe_events import service as stripe_events
from server.stripe_events.tables import StripeEvent
from tests.billing.helpers import advertiser
from tests.factories import login, post_form
from tests.stripe_fixtures import StripeLocal, deliver
from tests.worker_burst import run_burst


async def event_ids(stripe_local: StripeLocal) -> list[str]:
    """Every event at the stand-in, oldest first."""
    async with httpx.AsyncClient(base_url=stripe_local.base_url, timeout=10) as local:
        response = await local.get(
            "/v1/events", params={"limit": 100}, headers={"Authorization": f"Bearer {stripe_local.secret_key}"}
        )
    return [e["id"] for e in reversed(response.json()["data"])]


async def deliver_new(client, stripe_local: StripeLocal, seen: set[str], times: int = 1) -> list[str]:
    new = [e for e in await event_ids(stripe_local) if e not in seen]
    for event_id in new:
        answers = await deliver(client, stripe_local, event_id, times=times)
        assert [a.status_code for a in answers] == [200] * times, answers[0].text
        seen.add(event_id)
    return new


async def process(settings) -> list[str]:
    rows = (
        await StripeEvent.select(StripeEvent.event_id)
        .where(StripeEvent.processed_at.is_null())
        .order_by(StripeEvent.id)
    )
    async with stripe_api.gateway(settings) as gateway:
        return [await stripe_events.process(r["event_id"], gateway) for r in rows]


async def confirm_funding(client, amount: str, currency: str = "EUR"):
    """Post the top-up form, check the confirmation page names the amount, and confirm it."""
    shown = await post_form(client, "/advertiser/billing/fund", {"amount": amount, "currency": currency})
    assert shown.status_code == 200 and 'data-testid="charge-amount"' in shown.text, shown.text[-800:]
    minor = re.search(r'name="confirmed_minor" value="(\d+)"', shown.text).group(1)
    response = await post_form(
        client, "/advertiser/billing/fund", {"amount": amount, "currency": currency, "confirmed_minor": minor}
    )
    assert response.status_code == 200, response.text
    return response


async def start_funding(client, email: str, amount: str = "500.00") -> tuple[str, dict]:
    """Log in, add funds on the billing page; the browser would now be at the stand-in's Pay page."""
    await login(client, email)
    assert (await client.get("/advertiser/billing")).status_code == 200
    response = await confirm_funding(client, amount)
    url = re.search(r'data-testid="checkout-link" href="([^"]+)"', response.text).group(1)
    assert f'http-equiv="refresh" content="0;url={url}"' in response.text
    funding = await Funding.select().order_by(Funding.id, ascending=False).first()
    assert funding["status"] == "open" and funding["checkout_session_id"].startswith("cs_")
    return url, funding


async def pay(stripe_local: StripeLocal, session_id: str) -> None:
    stripe_local.control("POST", f"/_local/checkout/sessions/{session_id}/pay")


async def test_funding_is_credited_by_the_webhook_never_by_the_return_page(client, settings, stripe_local):
    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    url, funding = await start_funding(client, who.email)
    assert url.startswith(stripe_local.base_url)
    session_id = funding["checkout_session_id"]
    await pay(stripe_local, session_id)
    back = await client.get(f"/advertiser/billing/return?session_id={session_id}")
    assert back.status_code == 200 and "processing" in back.text and 'http-equiv="refresh"' in back.text
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 0
    # Stripe's deliveries, each twice, then the worker's processing.
    assert await deliver_new(client, stripe_local, seen, times=2)
    assert "credited" in await process(settings)
    back = await client.get(f"/advertiser/billing/return?session_id={session_id}")
    assert "€500.00 was added" in back.text and 'http-equiv="refresh"' not in back.text
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 50_000
    row = await Funding.select().where(Funding.id == funding["id"]).first()
    assert row["fee_minor"] == 775  # the stand-in's EU card price: 1.5 % + €0.25
    assert row["receipt_url"].startswith(stripe_local.base_url + "/receipts/")
    page = await client.get("/advertiser/billing")
    assert "€500.00" in page.text and "Receipt" in page.text
    assert await ledger.check() == []


async def test_no_post_to_stripe_leaves_without_an_idempotency_key(client, settings, stripe_local):
    stripe_local.control("DELETE", "/_local/requests")
    who = await advertiser()
    for amount in ("50.00", "75.00"):
        await start_funding(client, who.email, amount)
    async with httpx.AsyncClient(timeout=10) as http:
        requests = (await http.get(stripe_local.base_url + "/_local/requests")).json()["data"]
    posts = [r for r in requests if r["method"] == "POST"]
    assert len(posts) == 2, requests
    fundings = await Funding.select(Funding.id, Funding.reference).order_by(Funding.id)
    assert [p["idempotency_key"] for p in posts] == [f"funding:{f['id']}:{f['reference']}:checkout" for f in fundings]


async def test_the_worker_processes_delivered_events_on_a_real_redis(client, settings, stripe_local):
    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    _, funding = await start_funding(client, who.email)
    await pay(stripe_local, funding["checkout_session_id"])
    await deliver_new(client, stripe_local, seen)  # each delivery enqueued a job named after its event
    await run_burst(settings, {"settings": settings})
    assert await StripeEvent.count().where(StripeEvent.processed_at.is_null()) == 0
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 50_000
    assert await ledger.check() == []


async def test_the_sweep_processes_events_whose_job_was_lost(client, settings, stripe_local):
    from datetime import UTC, datetime, timedelta

    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    _, funding = await start_funding(client, who.email)
    await pay(stripe_local, funding["checkout_session_id"])
    await deliver_new(client, stripe_local, seen)
    async with stripe_api.gateway(settings) as gateway:
        assert (await stripe_events.sweep(gateway, now=datetime.now(UTC)))["processed"] == 0  # too fresh: the job's
        outcome = await stripe_events.sweep(gateway, now=datetime.now(UTC) + timedelta(minutes=1))
    assert outcome["processed"] >= 1 and outcome["failed"] == 0
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 50_000


async def test_refunds_and_disputes_made_at_stripe_reverse_the_funding(client, settings, stripe_local):
    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    _, funding = await start_funding(client, who.email)
    await pay(stripe_local, funding["checkout_session_id"])
    await deliver_new(client, stripe_local, seen)
    await process(settings)
    charge_id = (await Funding.select(Funding.charge_id).first())["charge_id"]
    sdk = stripe_local.client()
    sdk.v1.refunds.create({"charge": charge_id, "amount": 10_000}, {"idempotency_key": f"test-refund-{charge_id}"})
    await deliver_new(client, stripe_local, seen, times=3)
    await process(settings)
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 40_000
    dispute = stripe_local.control("POST", f"/_local/charges/{charge_id}/dispute").json()
    await deliver_new(client, stripe_local, seen)
    await process(settings)
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 0
    stripe_local.control("POST", f"/_local/disputes/{dispute['id']}/close", outcome="won")
    await deliver_new(client, stripe_local, seen, times=2)
    await process(settings)
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 40_000
    row = await Funding.select().first()
    assert (row["refunded_minor"], row["disputed_minor"]) == (10_000, 0)
    assert await ledger.check() == []


async def test_another_advertisers_fundings_are_never_visible(new_client, settings, stripe_local):
    first, second = new_client(), new_client()
    alice, bob = await advertiser(), await advertiser()
    _, funding = await start_funding(first, alice.email, "123.45")
    await login(second, bob.email)
    page = await second.get("/advertiser/billing")
    assert page.status_code == 200 and "123.45" not in page.text
    assert not re.search(rf'data-funding-id="{funding["id"]}"', page.text)
    stolen = await second.get(f"/advertiser/billing/return?session_id={funding['checkout_session_id']}")
    assert stolen.status_code == 404 and "123.45" not in stolen.text


async def test_amounts_outside_the_limits_are_refused_before_stripe_is_called(client, settings, stripe_local):
    who = await advertiser()
    await login(client, who.email)
    await client.get("/advertiser/billing")
    for amount, message in (
        ("49.99", "smallest top-up is €50.00"),
        ("10000.01", "largest top-up"),
        ("12.345", "more decimals"),
        ("abc", "amount such as"),
    ):
        response = await post_form(client, "/advertiser/billing/fund", {"amount": amount, "currency": "EUR"})
        assert response.status_code == 422 and message in response.text, (amount, response.text[-800:])
    assert await Funding.count() == 0
