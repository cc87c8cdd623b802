"""A conversion's life told by webhook, as the people involved cause it: a postback records it, the
advertiser decides on it on their review page, the approval job approves it when its hold ends.
Each change arrives once at each subscribed endpoint of its advertiser and of its publisher, each
with what their own pages show, verified by the Standard Webhooks library; an owner subscribed to
other events gets nothing, and a refused or repeated postback tells nobody anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from server.conversions import approval
from server.conversions.tables import Conversion
from server.core import db
from server.ledger import postings
from server.webhooks import delivery, outbox
from server.webhooks.tables import WebhookMessage
from tests.conversions.factories import BROWSER, click_id_of, postback, secrets_of
from tests.factories import login, make_advertiser, post_form
from tests.tracking.factories import campaign_with_link

CONVERSION_EVENTS = ["conversion.recorded", "conversion.approved", "conversion.rejected", "conversion.reversed"]


def later(seconds: int = 5) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def deliver(receiver, now: datetime | None = None) -> list:
    """Everything due delivered to the loopback receiver; the requests it received."""
    await delivery.deliver_due(now=now, allow_loopback=True)
    return list(receiver.requests)


def by_path(receiver, requests, secrets: dict[str, str]) -> dict[str, list[dict]]:
    """Each request verified with its endpoint's secret (the library raises if it is not genuine),
    as its body, by endpoint path."""
    found: dict[str, list[dict]] = {}
    for request in requests:
        assert request.method == "POST"
        verified = receiver.verify(secrets[request.path], request)
        assert verified == json.loads(request.body)
        found.setdefault(request.path, []).append(verified)
    return found


async def clicked(app, client, setup, **subs: str) -> str:
    """A reader's click on the publisher's link with these sub-IDs, its row stored (the buffer flushed,
    as it is within half a second)."""
    response = await client.get(f"/c/{setup.code}", params=subs, headers={"user-agent": BROWSER})
    assert response.status_code == 302
    click_id = response.headers["location"].split("click_id=")[1].split("&")[0]
    await app.state.click_buffer.flush()
    return click_id


async def watched_campaign(app, client, settings, receiver, webhook_endpoint, **overrides):
    """A campaign with a joined publisher; the advertiser and the publisher each subscribed to every
    conversion event, another advertiser subscribed to them too (they are never theirs) and the
    publisher's second endpoint only to payouts; a click with sub-IDs."""
    setup = await campaign_with_link(settings, **overrides)
    secrets = {}
    _, secrets["/advertiser"] = await webhook_endpoint(setup.advertiser.id, receiver.url("/advertiser"))
    _, secrets["/publisher"] = await webhook_endpoint(
        setup.publisher.id, receiver.url("/publisher"), events=CONVERSION_EVENTS
    )
    _, secrets["/payouts-only"] = await webhook_endpoint(
        setup.publisher.id, receiver.url("/payouts-only"), events=["payout.paid"]
    )
    stranger, _ = await make_advertiser()
    _, secrets["/stranger"] = await webhook_endpoint(stranger, receiver.url("/stranger"))
    click_id = await clicked(app, client, setup, sub1="summer sale", sub2="a&b=c", sub5="é")
    token = (await secrets_of(setup.campaign_id))["postback_secret"]
    return setup, secrets, click_id, token


async def test_a_postback_is_told_once_to_the_advertiser_and_to_the_publisher_and_a_retry_adds_nothing(
    app, client, settings, receiver, webhook_endpoint
):
    setup, secrets, click_id, token = await watched_campaign(app, client, settings, receiver, webhook_endpoint)
    batches = app.state.conversion_writer.batches
    answer = await postback(client, click_id=click_id, txn_id="order-77", amount=12000, token=token)
    # Stored by the server's group commit, its events in the batch's transaction.
    assert app.state.conversion_writer.batches == batches + 1
    assert answer.json()["status"] == "accepted", answer.text
    conversion_id = answer.json()["conversion_id"]
    # The advertiser's retry, a report refused (wrong token) and one for an unknown click tell nobody.
    assert (await postback(client, click_id=click_id, txn_id="order-77", amount=12000, token=token)).json()["duplicate"]
    assert (await postback(client, click_id=click_id, txn_id="order-78", token="wrong")).status_code == 401
    assert (await postback(client, click_id="nope", txn_id="order-79", token=token)).status_code == 404
    assert await WebhookMessage.count() == 2

    received = by_path(receiver, await deliver(receiver), secrets)
    assert set(received) == {"/advertiser", "/publisher"}
    [advertiser], [publisher] = received["/advertiser"], received["/publisher"]
    assert advertiser["type"] == publisher["type"] == "conversion.recorded"
    row = await Conversion.select().where(Conversion.id == conversion_id).first()
    assert advertiser["data"] == {
        "conversion_id": conversion_id,
        "status": "pending",
        "status_reason": "",
        "campaign_id": setup.campaign_id,
        "goal": "sale",
        "publisher_id": setup.publisher.id,
        "click_id": click_id,
        "txn_id": "order-77",
        "sale_amount_minor": 12000,
        "price_minor": 1000,
        "currency": "EUR",
        "source": "postback",
        "converted_at": advertiser["data"]["converted_at"],
        "hold_until": advertiser["data"]["hold_until"],
        "occurred_at": advertiser["data"]["occurred_at"],
    }
    assert publisher["data"] == {
        "conversion_id": conversion_id,
        "status": "pending",
        "status_reason": "",
        "campaign_id": setup.campaign_id,
        "goal": "sale",
        "click_id": click_id,
        "sub1": "summer sale",
        "sub2": "a&b=c",
        "sub3": "",
        "sub4": "",
        "sub5": "é",
        "payout_minor": row["publisher_amount_minor"],
        "currency": "EUR",
        "source": "postback",
        "converted_at": advertiser["data"]["converted_at"],
        "hold_until": advertiser["data"]["hold_until"],
        "occurred_at": advertiser["data"]["occurred_at"],
    }
    # ISO-8601 in UTC; the publisher is never told what the advertiser keeps.
    converted = datetime.fromisoformat(advertiser["data"]["converted_at"].replace("Z", "+00:00"))
    assert abs(converted - row["converted_at"].astimezone(UTC)) < timedelta(seconds=1)
    assert advertiser["data"]["occurred_at"].endswith("Z")
    assert not {"txn_id", "sale_amount_minor", "price_minor", "publisher_id"} & set(publisher["data"])
    # One webhook-id per message, the object in the message row for ordering.
    assert {r.headers["webhook-id"] for r in receiver.requests} == {
        m["msg_id"] for m in await WebhookMessage.select(WebhookMessage.msg_id)
    }
    assert {m["object_id"] for m in await WebhookMessage.select(WebhookMessage.object_id)} == {
        f"conversion:{conversion_id}"
    }


async def test_without_any_listener_a_postback_writes_no_message(app, client, settings):
    setup = await campaign_with_link(settings)
    outbox.forget()
    click_id = await click_id_of(client, setup.code)
    token = (await secrets_of(setup.campaign_id))["postback_secret"]
    assert (await postback(client, click_id=click_id, txn_id="t-1", token=token)).json()["status"] == "accepted"
    assert await WebhookMessage.count() == 0


async def test_a_campaign_with_caps_tells_its_conversions_too(app, client, settings, receiver, webhook_endpoint):
    setup, secrets, click_id, token = await watched_campaign(
        app, client, settings, receiver, webhook_endpoint, cap_conversions_daily=5
    )
    answer = await postback(client, click_id=click_id, txn_id="capped-1", token=token)
    assert answer.json()["status"] == "accepted", answer.text
    received = by_path(receiver, await deliver(receiver), secrets)
    assert [e["data"]["txn_id"] for e in received["/advertiser"]] == ["capped-1"]
    assert [e["data"]["sub1"] for e in received["/publisher"]] == ["summer sale"]


async def test_review_decisions_are_told_to_both_owners_with_the_reason(
    app, client, new_client, settings, receiver, webhook_endpoint
):
    setup, secrets, click_id, token = await watched_campaign(
        app, client, settings, receiver, webhook_endpoint, hold_days=30
    )
    ids = []
    for n in range(3):
        if n:
            client._transport.client = (f"198.51.100.{200 + n}", 4000)
            click_id = await clicked(app, client, setup, sub1=f"post-{n}")
        answer = await postback(client, click_id=click_id, txn_id=f"r-{n}", token=token)
        ids.append(answer.json()["conversion_id"])
    await postings.fund_advertiser(setup.advertiser.id, 10_000, "EUR", reference_id=1, key="fund-review")
    await deliver(receiver)
    receiver.clear()

    browser = new_client()
    await login(browser, setup.advertiser.email)
    await browser.get("/advertiser/conversions")
    form = "/advertiser/conversions/decide"
    decide = [
        ({"conversion_id": [str(ids[0])], "action": "approve", "reason": ""}, "conversion.approved"),
        ({"conversion_id": [str(ids[1])], "action": "reject", "reason": "Order cancelled"}, "conversion.rejected"),
        ({"conversion_id": [str(ids[0])], "action": "reverse", "reason": "Refunded"}, "conversion.reversed"),
    ]
    for form_data, _event in decide:
        assert (await post_form(browser, form, form_data)).status_code in (200, 303)
    # Deciding again changes nothing, so tells nothing.
    assert (await post_form(browser, form, decide[1][0])).status_code in (200, 303)

    received = by_path(receiver, await deliver(receiver), secrets)
    assert set(received) == {"/advertiser", "/publisher"}
    for path in ("/advertiser", "/publisher"):
        told = [
            (e["type"], e["data"]["conversion_id"], e["data"]["status"], e["data"]["status_reason"])
            for e in received[path]
        ]
        assert sorted(told) == sorted(
            [
                ("conversion.approved", ids[0], "approved", ""),
                ("conversion.rejected", ids[1], "rejected", "Order cancelled"),
                ("conversion.reversed", ids[0], "reversed", "Refunded"),
            ]
        ), path
    # Per object, in the order it happened.
    first = [e["type"] for e in received["/publisher"] if e["data"]["conversion_id"] == ids[0]]
    assert first == ["conversion.approved", "conversion.reversed"]


async def test_the_approval_job_tells_each_approval_once_in_one_emit_per_batch(
    app, client, settings, receiver, webhook_endpoint, monkeypatch
):
    setup, secrets, click_id, token = await watched_campaign(
        app, client, settings, receiver, webhook_endpoint, hold_days=0
    )
    for n in range(3):
        if n:
            client._transport.client = (f"198.51.100.{210 + n}", 4000)
            click_id = await clicked(app, client, setup, sub1=f"job-{n}")
        assert (await postback(client, click_id=click_id, txn_id=f"j-{n}", token=token)).json()["status"] == "accepted"
    await postings.fund_advertiser(setup.advertiser.id, 10_000, "EUR", reference_id=1, key="fund-job")
    await deliver(receiver)
    receiver.clear()

    calls = []
    real = outbox.emit_many

    async def counted(events, **kwargs):
        calls.append(len(events))
        return await real(events, **kwargs)

    monkeypatch.setattr(outbox, "emit_many", counted)
    now = later()
    assert (await approval.run(now=now)).approved == 3
    assert (await approval.run(now=now)).approved == 0  # a second run approves nothing, tells nothing
    # One emit per batch, each conversion to its advertiser and to its publisher in the same call. On
    # PostgreSQL the job's lanes may split the three between two batches (SKIP LOCKED), one emit each.
    assert sum(calls) == 6 and all(n % 2 == 0 for n in calls)
    assert len(calls) <= (1 if db.is_sqlite() else approval.LANES)

    received = by_path(receiver, await deliver(receiver, now), secrets)
    assert set(received) == {"/advertiser", "/publisher"}
    for path in ("/advertiser", "/publisher"):
        assert [e["type"] for e in received[path]] == ["conversion.approved"] * 3
        assert {e["data"]["status"] for e in received[path]} == {"approved"}
    assert sorted(e["data"]["sub1"] for e in received["/publisher"]) == ["job-1", "job-2", "summer sale"]
