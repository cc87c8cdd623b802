"""Delivery as a receiver sees it: every webhook verifies with the Standard Webhooks library, a
rotation's overlap carries both signatures, an outage loses and duplicates nothing and keeps each
object's order, a day of failures disables the endpoint and tells its owner, postbacks arrive with
their macros URL-encoded."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from standardwebhooks import WebhookVerificationError

from server.core import clock, db, hours
from server.mail import outbox as mail_outbox
from server.webhooks import delivery, outbox, service
from server.webhooks.tables import WebhookAttempt, WebhookEndpoint, WebhookMessage
from tests.factories import make_advertiser
from tests.tracking.factories import campaign_with_link
from tests.worker_burst import run_burst
from workers import settings as worker_settings


async def _emit(owner: int, events: list[tuple[str, str]], now=None) -> None:
    """(event_type, object_id) pairs, each its own event, in this order."""
    async with db.transaction():
        for n, (event_type, object_id) in enumerate(events):
            await outbox.emit(event_type, [owner], {"n": n, "object": object_id}, object_id=object_id, now=now)


async def _messages() -> list[dict]:
    return await WebhookMessage.select().order_by(WebhookMessage.id)


def _payloads(receiver, secret: str) -> list[dict]:
    return [receiver.verify(secret, r) for r in receiver.requests]


def test_the_delivery_job_runs_every_ten_seconds_under_the_cron_lock():
    [job] = [c for c in worker_settings.CRON_JOBS if c.name.endswith("deliver_webhooks")]
    assert job.second == set(range(0, 60, 10)) and job.unique and job.run_at_startup


async def test_the_real_worker_delivers_what_is_due(webhook_endpoint, receiver, settings):
    owner, _ = await make_advertiser()
    _, secret = await webhook_endpoint(owner, receiver.url())
    await _emit(owner, [("conversion.recorded", "conversion:1"), ("conversion.approved", "conversion:1")])
    [delivered] = await run_burst(settings, {"clock": clock.now}, "deliver_webhooks")
    assert delivered == 2
    assert [p["type"] for p in _payloads(receiver, secret)] == ["conversion.recorded", "conversion.approved"]


async def test_every_webhook_verifies_and_a_tampered_or_old_one_is_refused(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    _, secret = await webhook_endpoint(owner, receiver.url())
    await _emit(owner, [("conversion.recorded", "conversion:1"), ("payout.paid", "payout:9")])
    assert await delivery.deliver_due() == 2
    rows = await _messages()
    assert [r["status"] for r in rows] == ["delivered", "delivered"]
    payloads = _payloads(receiver, secret)
    assert [p["type"] for p in payloads] == ["conversion.recorded", "payout.paid"]
    assert payloads[0]["data"] == {"n": 0, "object": "conversion:1"}
    first = receiver.requests[0]
    assert first.method == "POST" and first.path == "/hook"
    assert first.headers["webhook-id"] == rows[0]["msg_id"]
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"] == "affnet-webhooks/1"
    assert abs(int(first.headers["webhook-timestamp"]) - time.time()) < 60

    with pytest.raises(WebhookVerificationError):
        receiver.verify(secret, replace(first, body=first.body.replace(b"recorded", b"approved")))
    old = int(time.time()) - 3600
    headers = {
        **first.headers,
        "webhook-timestamp": str(old),
        "webhook-signature": delivery.sign(secret, first.headers["webhook-id"], old, first.body),
    }
    with pytest.raises(WebhookVerificationError, match="too old"):
        receiver.verify(secret, replace(first, headers=headers))
    # The attempt log keeps what was sent and the answer, never the secret.
    attempts = await WebhookAttempt.select().order_by(WebhookAttempt.id)
    assert [a["response_status"] for a in attempts] == [200, 200]
    assert all(secret not in json.dumps(a, default=str) for a in attempts)


async def test_during_a_rotation_both_secrets_verify_and_the_old_one_stops_after_a_day(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    endpoint_id, old_secret = await webhook_endpoint(owner, receiver.url())
    now = clock.now()
    new_secret = await service.rotate_secret(owner, endpoint_id, now=now)
    assert new_secret != old_secret and new_secret.startswith("whsec_")
    await _emit(owner, [("conversion.approved", "conversion:1")], now=now)
    await delivery.deliver_due(now)
    [during] = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert receiver.verify(old_secret, during)["type"] == "conversion.approved"
    assert receiver.verify(new_secret, during)["type"] == "conversion.approved"

    later = now + timedelta(hours=24, minutes=1)
    await _emit(owner, [("conversion.reversed", "conversion:1")], now=later)
    await delivery.deliver_due(later)
    after = receiver.requests[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert receiver.verify(new_secret, after)["type"] == "conversion.reversed"
    with pytest.raises(WebhookVerificationError):
        receiver.verify(old_secret, after)


async def test_after_an_outage_every_event_arrives_once_in_each_objects_order(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    _, secret = await webhook_endpoint(owner, receiver.url())
    t0 = clock.now()
    events = [
        ("conversion.recorded", "conversion:1"),
        ("conversion.recorded", "conversion:2"),
        ("conversion.approved", "conversion:1"),
        ("conversion.rejected", "conversion:2"),
        ("conversion.reversed", "conversion:1"),
    ]
    await _emit(owner, events, now=t0)
    receiver.stop()
    for seconds in (0, 6, 20, 400, 2400):
        assert await delivery.deliver_due(t0 + timedelta(seconds=seconds)) == 0
    rows = await _messages()
    assert all(r["status"] == "pending" for r in rows)
    tried = {r["object_id"] for r in rows if r["attempts"] > 0}
    assert tried and all(r["event_type"] == "conversion.recorded" for r in rows if r["attempts"] > 0)
    assert await WebhookAttempt.count() >= 3

    receiver.start()
    back = t0 + timedelta(hours=3)
    assert await delivery.deliver_due(back) == 5
    assert await delivery.deliver_due(back + timedelta(minutes=1)) == 0  # nothing twice
    payloads = _payloads(receiver, secret)
    assert len(receiver.requests) == 5
    for obj in ("conversion:1", "conversion:2"):
        arrived = [p["type"] for p in payloads if p["data"]["object"] == obj]
        assert arrived == [t for t, o in events if o == obj]
    rows = await _messages()
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(r["msg_id"] for r in rows)
    assert all(r["status"] == "delivered" for r in rows)
    assert max(r["attempts"] for r in rows) > 1  # a retry, with the same webhook-id


async def test_a_later_event_of_an_object_waits_for_the_earlier_ones_retry(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    _, secret = await webhook_endpoint(owner, receiver.url())
    t0 = clock.now()
    await _emit(
        owner,
        [("conversion.recorded", "conversion:1"), ("conversion.approved", "conversion:1"), ("payout.paid", "payout:1")],
        now=t0,
    )
    receiver.respond(503)
    await delivery.deliver_due(t0)
    assert [json.loads(r.body)["type"] for r in receiver.requests] == ["conversion.recorded", "payout.paid"]
    receiver.respond(200)
    await delivery.deliver_due(t0 + timedelta(seconds=3))  # not due yet: nothing goes
    assert len(receiver.requests) == 2
    await delivery.deliver_due(t0 + timedelta(seconds=6))
    types = [receiver.verify(secret, r)["type"] for r in receiver.requests[2:]]
    assert types == ["conversion.recorded", "payout.paid", "conversion.approved"]
    first_id = receiver.requests[0].headers["webhook-id"]
    assert receiver.requests[2].headers["webhook-id"] == first_id  # the retry is the same message


async def test_two_runs_at_once_deliver_each_message_once(webhook_endpoint, receiver):
    owners = [(await make_advertiser())[0] for _ in range(3)]
    for n, owner in enumerate(owners):  # three endpoints: delivered side by side
        await webhook_endpoint(owner, receiver.url(f"/hook{n}"))
        await _emit(owner, [("conversion.recorded", f"conversion:{k}") for k in range(4)])
    now = clock.now()
    done = await asyncio.gather(delivery.deliver_due(now), delivery.deliver_due(now))
    assert sum(done) == 12
    assert len(receiver.requests) == 12
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 12
    for n in range(3):  # each endpoint's messages in the order they were written
        bodies = [json.loads(r.body) for r in receiver.requests if r.path == f"/hook{n}"]
        assert [b["data"]["n"] for b in bodies] == [0, 1, 2, 3]


async def test_a_day_of_failures_disables_the_endpoint_and_mails_its_owner(webhook_endpoint, receiver, mailbox):
    owner, email = await make_advertiser()
    endpoint_id, _ = await webhook_endpoint(owner, receiver.url())
    receiver.respond(500)
    t0 = clock.now()
    await _emit(owner, [("conversion.recorded", "conversion:1")], now=t0)
    tries = []
    for _ in range(12):
        row = await WebhookMessage.select().first()
        if row["status"] != "pending":
            break
        at = max(hours.utc(row["next_attempt_at"]), t0)
        tries.append(at - t0)
        await delivery.deliver_due(at)
    assert row["status"] == "failed"
    assert tries[1] == timedelta(seconds=5) and tries[2] == timedelta(minutes=5, seconds=5)
    assert tries[-1] == timedelta(hours=24)  # the last try, a day after the first
    endpoint = await WebhookEndpoint.select().where(WebhookEndpoint.id == endpoint_id).first()
    assert not endpoint["enabled"] and endpoint["disabled_reason"] == "failing"
    await mail_outbox.deliver_due(t0 + timedelta(hours=25))
    [mail] = [m for m in mailbox.catcher.to(email) if "webhook endpoint was disabled" in m.subject]
    assert receiver.url() in mail.text and f"/account/webhooks/{endpoint_id}" in mail.text
    # Disabled: new events are not queued for it.
    async with db.transaction():
        assert await outbox.emit("conversion.approved", [owner], {}, object_id="conversion:1") == 0


async def test_an_unsafe_destination_at_delivery_time_is_retried_and_nothing_is_sent(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    await webhook_endpoint(owner, receiver.url())
    await _emit(owner, [("conversion.recorded", "conversion:1")])
    assert await delivery.deliver_due(allow_loopback=False) == 0
    assert receiver.requests == []
    [row] = await _messages()
    assert row["status"] == "pending" and row["attempts"] == 1 and "unsafe" in row["last_error"]


async def test_send_again_delivers_the_same_message_id_once_more(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    _, secret = await webhook_endpoint(owner, receiver.url())
    await _emit(owner, [("conversion.approved", "conversion:1")])
    await delivery.deliver_due()
    [row] = await _messages()
    assert await delivery.deliver_now(row["id"]) is True
    first, again = receiver.requests
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == row["msg_id"]
    assert receiver.verify(secret, again)["type"] == "conversion.approved"
    [row] = await _messages()
    assert row["status"] == "delivered" and row["attempts"] == 2


async def test_a_postback_is_a_get_with_its_macros_url_encoded(clean, settings, receiver):
    setup = await campaign_with_link(settings)
    publisher = setup.publisher.id
    await service.save_template(
        publisher,
        None,
        receiver.url("/pb") + "?click={click_id}&s1={sub1}&amount={payout}&cur={currency}&c={campaign_id}",
        on_recorded=True,
        on_approved=True,
        allow_loopback=True,
    )
    macros = {"click_id": "abc 123", "sub1": "spring&sale=1", "payout": "8.00", "currency": "EUR"}
    async with db.transaction():
        assert await outbox.postback(publisher, setup.campaign_id, "approved", macros, object_id="conversion:5") == 1
    assert await delivery.deliver_due() == 1
    [request] = receiver.requests
    assert request.method == "GET" and request.path == "/pb"
    assert "click=abc%20123&s1=spring%26sale%3D1" in request.query
    assert parse_qs(request.query) == {
        "click": ["abc 123"],
        "s1": ["spring&sale=1"],
        "amount": ["8.00"],
        "cur": ["EUR"],
        "c": [str(setup.campaign_id)],
    }
    assert request.headers["user-agent"] == "affnet-webhooks/1"
    [row] = await _messages()
    assert row["status"] == "delivered" and row["kind"] == "postback"


async def test_a_redirect_is_not_followed_but_retried_as_a_failure(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    await webhook_endpoint(owner, receiver.url())
    await _emit(owner, [("conversion.recorded", "conversion:1")])
    receiver.respond(302)
    assert await delivery.deliver_due() == 0
    assert len(receiver.requests) == 1
    [row] = await _messages()
    assert row["status"] == "pending" and row["last_status"] == 302 and row["last_error"] == "HTTP 302"
