"""The stand-in speaks Stripe's wire format to the official SDK: form-encoded requests, JSON objects, Stripe's
error objects and statuses, idempotency keys that replay, and a log of every request."""

from __future__ import annotations

import uuid

import httpx
import pytest
import stripe

from tests.dev.stripe_local.helpers import new_session


def _create(client: stripe.StripeClient, key: str, amount: int = 50000):
    return client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "success_url": "http://affnet.test/ok?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://affnet.test/cancel",
            "metadata": {"funding_id": "7"},
            "line_items": [
                {
                    "price_data": {"currency": "eur", "unit_amount": amount, "product_data": {"name": "Top-up"}},
                    "quantity": 2,
                }
            ],
        },
        {"idempotency_key": key},
    )


def test_checkout_session_has_stripes_shape(stripe_local):
    session = new_session(stripe_local)
    assert session.id.startswith("cs_test_") and session.object == "checkout.session"
    assert session.livemode is False and session.created > 0
    assert (session.amount_total, session.currency, session.status, session.payment_status) == (
        50000,
        "eur",
        "open",
        "unpaid",
    )
    assert session.metadata["funding_id"] == "7" and session.client_reference_id == "funding-7"
    assert session.url == f"{stripe_local.base_url}/pay/{session.id}"
    assert session.payment_intent is None  # created when the buyer pays, as on Stripe
    fetched = stripe_local.client().v1.checkout.sessions.retrieve(session.id, {"expand": ["line_items"]})
    assert fetched.line_items.data[0].price.unit_amount == 50000 and fetched.line_items.data[0].quantity == 1


def test_same_idempotency_key_and_parameters_replay_the_first_response(stripe_local):
    key = f"funding-{uuid.uuid4()}"
    client = stripe_local.client()
    first = _create(client, key)
    again = _create(client, key)
    assert again.id == first.id and first.amount_total == 100000
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert first.last_response.headers.get("Idempotent-Replayed") is None


def test_same_idempotency_key_with_other_parameters_is_refused(stripe_local):
    key = f"funding-{uuid.uuid4()}"
    client = stripe_local.client()
    _create(client, key, amount=50000)
    with pytest.raises(stripe.IdempotencyError) as refused:
        _create(client, key, amount=60000)
    assert refused.value.http_status == 400
    assert refused.value.error.type == "idempotency_error"


def test_every_request_is_logged_with_its_idempotency_key(stripe_local):
    key = f"funding-{uuid.uuid4()}"
    session = _create(stripe_local.client(), key)
    stripe_local.client().v1.checkout.sessions.retrieve(session.id)
    httpx.post(
        f"{stripe_local.base_url}/v1/refunds",
        data={"charge": "ch_nope"},
        headers={"Authorization": f"Bearer {stripe_local.secret_key}"},
    )
    log = httpx.get(f"{stripe_local.base_url}/_local/requests").json()["data"]
    mine = [r for r in log if r["idempotency_key"] == key]
    assert mine[0]["method"] == "POST" and mine[0]["path"] == "/v1/checkout/sessions"
    assert any(r["method"] == "GET" and r["path"] == f"/v1/checkout/sessions/{session.id}" for r in log)
    keyless = [r for r in log if r["method"] == "POST" and r["idempotency_key"] is None]
    assert keyless[-1]["path"] == "/v1/refunds"  # what a test of affnet looks for to fail


def test_no_key_or_a_wrong_key_is_401(stripe_local):
    missing = httpx.get(f"{stripe_local.base_url}/v1/events")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.AuthenticationError) as wrong:
        stripe.StripeClient(
            "sk_test_wrong", base_addresses={"api": stripe_local.base_url}, max_network_retries=0
        ).v1.events.list()
    assert wrong.value.http_status == 401


def test_errors_are_stripe_error_objects(stripe_local):
    client = stripe_local.client()
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.charges.retrieve("ch_doesnotexist")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert missing.value.error.param == "id" and "ch_doesnotexist" in missing.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.checkout.sessions.create(
            {"mode": "payment", "success_url": "http://x", "colour": "red", "line_items": []}
        )
    assert unknown.value.http_status == 400 and unknown.value.error.param == "colour"
    with pytest.raises(stripe.InvalidRequestError) as bad_amount:
        client.v1.checkout.sessions.create(
            {
                "mode": "payment",
                "success_url": "http://x",
                "line_items": [
                    {
                        "price_data": {"currency": "eur", "unit_amount": "12.50", "product_data": {"name": "x"}},
                        "quantity": 1,
                    }
                ],
            }
        )
    assert bad_amount.value.error.param == "line_items[0][price_data][unit_amount]"
    unrouted = httpx.get(
        f"{stripe_local.base_url}/v1/nothing_here", headers={"Authorization": f"Bearer {stripe_local.secret_key}"}
    )
    assert unrouted.status_code == 404 and "Unrecognized request URL" in unrouted.json()["error"]["message"]


def test_nested_form_keys_decode_like_stripes(stripe_local):
    """`expand[]=` and `expand[0]=` both work; nested metadata and line items arrive whole."""
    session = new_session(stripe_local)
    headers = {"Authorization": f"Bearer {stripe_local.secret_key}"}
    for query in ("expand[]=line_items", "expand[0]=line_items"):
        fetched = httpx.get(f"{stripe_local.base_url}/v1/checkout/sessions/{session.id}?{query}", headers=headers)
        assert fetched.json()["line_items"]["data"][0]["description"] == "affnet balance top-up"
