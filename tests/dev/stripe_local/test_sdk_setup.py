"""The ways affnet can point the official SDK at the stand-in, and the `deliver` helper affnet's tests use."""

from __future__ import annotations

import httpx
import pytest
import stripe
from litestar import Litestar, Request, Response, post

from tests.dev.stripe_local.helpers import events_for, new_session, pay
from tests.stripe_fixtures import deliver


def test_the_global_api_base_works_too(stripe_local):
    saved = stripe.api_base, stripe.api_key
    stripe.api_base, stripe.api_key = stripe_local.base_url, stripe_local.secret_key
    try:
        session = stripe.checkout.Session.create(
            mode="payment",
            success_url="http://affnet.test/ok",
            idempotency_key="global-style-1",
            line_items=[
                {"price_data": {"currency": "eur", "unit_amount": 700, "product_data": {"name": "x"}}, "quantity": 1}
            ],
        )
        assert stripe.checkout.Session.retrieve(session.id).amount_total == 700
    finally:
        stripe.api_base, stripe.api_key = saved


# stripe 16.1's async client hands httpx a form body as `data=<str>`, which httpx deprecates; not ours to fix.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
async def test_the_async_client_works(stripe_local):
    client = stripe_local.client()
    session = await client.v1.checkout.sessions.create_async(
        {
            "mode": "payment",
            "success_url": "http://affnet.test/ok",
            "line_items": [
                {"price_data": {"currency": "eur", "unit_amount": 900, "product_data": {"name": "x"}}, "quantity": 1}
            ],
        }
    )
    fetched = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert fetched.id == session.id and fetched.amount_total == 900


async def test_deliver_posts_a_payload_the_sdk_verifies(stripe_local):
    seen: list[str] = []

    @post("/stripe/webhook", status_code=200)
    async def webhook(request: Request) -> Response:
        try:
            event = stripe.Webhook.construct_event(
                await request.body(), request.headers.get("stripe-signature"), stripe_local.webhook_secret
            )
        except stripe.SignatureVerificationError:
            return Response("bad signature", status_code=400)
        seen.append(event.id)
        return Response("ok")

    session = new_session(stripe_local)
    pay(stripe_local, session)
    event = next(e for e in events_for(stripe_local, session.id) if e["type"] == "checkout.session.completed")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=Litestar([webhook])), base_url="http://affnet.test"
    ) as client:
        answers = await deliver(client, stripe_local, event["id"], times=2)
    assert [a.status_code for a in answers] == [200, 200] and seen == [event["id"], event["id"]]
