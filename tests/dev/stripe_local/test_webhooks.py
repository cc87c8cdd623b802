"""Events reach the endpoint signed exactly as stripe.Webhook.construct_event verifies, in the background,
retried while the endpoint fails; tests without a URL fetch the signed payload and post it themselves."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import stripe

from dev.stripe_local.webhooks import signature_header
from tests.dev.stripe_local.helpers import Receiver, events_for, new_session, pay, wait_until


@pytest.fixture
def receiver(stripe_local) -> Iterator[Receiver]:
    """A live endpoint for the stand-in's deliveries, unset again afterwards (the stand-in is shared)."""
    endpoint = Receiver()
    stripe_local.control("POST", "/_local/webhook_endpoint", url=endpoint.url)
    yield endpoint
    httpx.post(f"{stripe_local.base_url}/_local/webhook_endpoint", data={"url": ""})
    endpoint.close()


def _a_paid_session_event(stripe_local) -> dict:
    session = new_session(stripe_local)
    pay(stripe_local, session)
    return next(e for e in events_for(stripe_local, session.id) if e["type"] == "checkout.session.completed")


def test_the_sdk_accepts_the_signed_payload_and_rejects_a_tampered_one(stripe_local):
    event = _a_paid_session_event(stripe_local)
    signed = httpx.get(f"{stripe_local.base_url}/_local/events/{event['id']}/signed")
    header = signed.headers["stripe-signature"]
    assert header.startswith("t=") and ",v1=" in header
    verified = stripe.Webhook.construct_event(signed.content, header, stripe_local.webhook_secret)
    assert verified.id == event["id"] and verified.type == "checkout.session.completed"
    assert verified.data.object.amount_total == 50000
    tampered = signed.content.replace(b'"amount_total": 50000', b'"amount_total": 99999')
    assert tampered != signed.content
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, header, stripe_local.webhook_secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(signed.content, header, "whsec_someone_else")


def test_an_old_signature_is_outside_the_sdks_tolerance():
    payload = b'{"id": "evt_1", "object": "event"}'
    header = signature_header(payload, "whsec_x", timestamp=1_000_000)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_x")


def test_events_are_delivered_signed_to_the_endpoint(stripe_local, receiver):
    session = new_session(stripe_local)
    pay(stripe_local, session)
    wait_until(lambda: len(receiver.received) >= 3, "three deliveries")
    types = set()
    for headers, body in receiver.received:
        event = stripe.Webhook.construct_event(body, headers["stripe-signature"], stripe_local.webhook_secret)
        types.add(event.type)
    assert types == {"charge.succeeded", "payment_intent.succeeded", "checkout.session.completed"}


def test_a_failing_endpoint_is_retried_until_it_answers_2xx(stripe_local, receiver):
    receiver.statuses = [500, 503]
    event = _a_paid_session_event(stripe_local)
    stripe_local.control("POST", f"/_local/events/{event['id']}/deliver")

    def attempts() -> list[dict]:
        log = httpx.get(f"{stripe_local.base_url}/_local/deliveries").json()["data"]
        return [a for a in log if a["event"] == event["id"]]

    wait_until(lambda: any(a["status"] == 200 for a in attempts()), "a successful retry")
    # The redelivery's attempts (the first failures may also have hit the three pay events).
    assert [a["status"] for a in attempts()][-1] == 200
    bodies = {body for _, body in receiver.received if json.loads(body)["id"] == event["id"]}
    assert len(bodies) == 1  # every delivery of one event carries the same bytes


def test_an_event_can_be_redelivered_many_times(stripe_local, receiver):
    event = _a_paid_session_event(stripe_local)
    answer = stripe_local.control("POST", f"/_local/events/{event['id']}/deliver", times=3, wait="true").json()
    assert answer["statuses"] == [200, 200, 200]
    wait_until(
        lambda: sum(json.loads(b)["id"] == event["id"] for _, b in receiver.received) >= 4,
        "the first delivery and three more",
    )


def test_without_an_endpoint_nothing_is_sent(stripe_local):
    event = _a_paid_session_event(stripe_local)
    refused = httpx.post(f"{stripe_local.base_url}/_local/events/{event['id']}/deliver")
    assert refused.status_code == 400
    assert event["pending_webhooks"] == 0
