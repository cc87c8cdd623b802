"""A top-up abandoned at Stripe Checkout ends "Expired — nothing was charged": when Stripe's
checkout.session.expired event is applied, and on the pages as soon as the session is past its
expiry, whether or not that event ever arrives. No ledger entry either way."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from server.billing import service as billing
from server.billing.tables import Funding
from server.core import clock
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.stripe_events import service as stripe_events
from server.stripe_events.tables import StripeEvent
from tests.billing.helpers import FakeStripe, advertiser, deliver, event
from tests.billing.test_with_stripe_local import deliver_new, event_ids, pay, process, start_funding
from tests.factories import login
from tests.stripe_fixtures import StripeLocal

EXPIRED = "Expired — nothing was charged"


@pytest.fixture
def fake() -> FakeStripe:
    return FakeStripe()


async def started(fake: FakeStripe, who) -> dict:
    """A top-up of €500.00 whose Checkout Session is open at the fake Stripe; its row."""
    await billing.start_funding(who, {"amount": "500.00", "currency": "EUR"}, fake, "http://testserver.local")
    return await Funding.select().where(Funding.id == fake.sessions[-1]["funding_id"]).first()


def session_event(event_type: str, funding: dict, **fields) -> dict:
    return event(
        event_type,
        {
            "id": funding["checkout_session_id"],
            "object": "checkout.session",
            "mode": "payment",
            "amount_total": funding["amount_minor"],
            "currency": "eur",
            "metadata": {"funding_id": str(funding["id"])},
            **fields,
        },
    )


async def process_all(fake: FakeStripe) -> list[str]:
    rows = await StripeEvent.select(StripeEvent.event_id).where(StripeEvent.processed_at.is_null())
    return [await stripe_events.process(r["event_id"], fake) for r in rows]


def status_cell(html: str, funding_id: int) -> str:
    row = re.search(rf'data-funding-id="{funding_id}".*?</tr>', html, re.S)
    assert row, html
    return re.search(r'data-testid="funding-status">([^<]*)<', row.group(0)).group(1)


def local_session(stripe_local: StripeLocal, session_id: str):
    return stripe_local.client().v1.checkout.sessions.retrieve(session_id)


async def nothing_charged(who) -> None:
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 0
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "funding") == 0
    assert await ledger.check() == []


async def test_stripes_expired_event_shows_the_top_up_expired_and_nothing_was_charged(client, fake, settings):
    who = await advertiser()
    funding = await started(fake, who)
    await login(client, who.email)
    assert status_cell((await client.get("/advertiser/billing")).text, funding["id"]) == "Processing"

    evt = session_event("checkout.session.expired", funding, status="expired", payment_status="unpaid")
    assert (await deliver(client, evt, settings.stripe_webhook_secret)).status_code == 200
    assert await process_all(fake) == ["expired"]

    assert (await Funding.select(Funding.status).first())["status"] == "expired"
    assert status_cell((await client.get("/advertiser/billing")).text, funding["id"]) == EXPIRED
    back = await client.get(f"/advertiser/billing/return?session_id={funding['checkout_session_id']}")
    assert EXPIRED in back.text and 'http-equiv="refresh"' not in back.text  # nothing left to wait for
    french = await client.get("/advertiser/billing", headers={"Accept-Language": "fr-FR"})
    assert status_cell(french.text, funding["id"]) == "Expiré — rien n'a été débité"
    assert "500,00\u00a0€" in french.text
    await nothing_charged(who)


async def test_a_top_up_past_its_session_expiry_shows_expired_without_stripes_event(client, fake):
    who = await advertiser()
    funding = await started(fake, who)
    assert funding["status"] == "open" and funding["expires_at"] is not None
    assert funding["expires_at"] - funding["created_at"] == timedelta(hours=24)  # Stripe's default
    [before] = await billing.fundings_of(who.id, now=funding["expires_at"] - timedelta(seconds=1))
    [after] = await billing.fundings_of(who.id, now=funding["expires_at"])
    assert (before.status, after.status) == ("open", "expired")

    # The pages, a day later, when the expiry event was lost on the way.
    await Funding.update({Funding.expires_at: clock.now() - timedelta(minutes=1)}).where(Funding.id == funding["id"])
    await login(client, who.email)
    assert status_cell((await client.get("/advertiser/billing")).text, funding["id"]) == EXPIRED
    back = await client.get(f"/advertiser/billing/return?session_id={funding['checkout_session_id']}")
    assert 'data-status="expired"' in back.text and EXPIRED in back.text
    assert (await Funding.select(Funding.status).first())["status"] == "open"  # shown, not written
    await nothing_charged(who)


async def test_a_debit_started_before_the_expiry_stays_processing(client, fake, settings):
    """A SEPA debit completes the session unpaid and settles days later: past the session's expiry it
    is still a payment under way, not an abandoned top-up."""
    who = await advertiser()
    funding = await started(fake, who)
    evt = session_event(
        "checkout.session.completed", funding, status="complete", payment_status="unpaid", payment_intent="pi_sepa_1"
    )
    await deliver(client, evt, settings.stripe_webhook_secret)
    assert await process_all(fake) == ["waiting: not paid yet"]

    [line] = await billing.fundings_of(who.id, now=funding["expires_at"] + timedelta(days=3))
    assert line.status == "open"
    await nothing_charged(who)


async def test_leaving_checkout_by_its_cancel_link_expires_the_top_up_at_stripe_at_once(
    client, new_client, settings, stripe_local
):
    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    _, funding = await start_funding(client, who.email)
    stranger = new_client()  # another advertiser's forged cancel link ends nothing of theirs
    await login(stranger, (await advertiser()).email)
    await stranger.get(f"/advertiser/billing?canceled={funding['id']}")
    assert (await Funding.select(Funding.status).where(Funding.id == funding["id"]).first())["status"] == "open"

    back = await client.get(f"/advertiser/billing?canceled={funding['id']}")

    assert "The payment was cancelled; nothing was charged." in back.text
    assert status_cell(back.text, funding["id"]) == EXPIRED
    session = local_session(stripe_local, funding["checkout_session_id"])
    assert session.status == "expired"  # it can no longer be paid
    assert await deliver_new(client, stripe_local, seen)  # Stripe's checkout.session.expired finds it done
    assert await process(settings) == ["expired"]
    assert (await Funding.select(Funding.status).where(Funding.id == funding["id"]).first())["status"] == "expired"
    await nothing_charged(who)


async def test_a_cancel_link_after_paying_leaves_the_payment_to_be_credited(client, settings, stripe_local):
    seen = set(await event_ids(stripe_local))
    who = await advertiser()
    _, funding = await start_funding(client, who.email)
    await pay(stripe_local, funding["checkout_session_id"])

    back = await client.get(f"/advertiser/billing?canceled={funding['id']}")  # an old tab's link

    assert status_cell(back.text, funding["id"]) == "Processing"
    await deliver_new(client, stripe_local, seen)
    assert "credited" in await process(settings)
    assert await ledger.balance(K.advertiser_balance, "EUR", who.id) == 50_000
