"""The other events, each caused as it is in the product: an advertiser answers applications on
their campaign's page, the approval job pauses a campaign its advertiser cannot pay for, a
reviewer rejects a held conversion or a held publisher, a payout batch is paid (one line refused
by Stripe). Each reaches its one owner once, verified by the Standard Webhooks library; an endpoint
subscribed to other events gets nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.billing import stripe_api
from server.campaigns import service as campaigns
from server.campaigns.tables import Membership
from server.conversions import approval, holds
from server.conversions.tables import Conversion, PublisherHold, PublisherRule
from server.payouts import execute
from server.webhooks import delivery
from server.webhooks.tables import WebhookMessage
from tests.conversions.factories import campaign_and_click, click_id_of, postback
from tests.factories import login, make_advertiser, make_publisher, post_form, staff_client
from tests.payouts.factories import approved_batch, lines_of
from tests.tracking.factories import campaign_form

OTHER_EVENTS = ["conversion.recorded", "payout.failed"]  # never one of those caused here


async def received(receiver, secrets: dict[str, str], now: datetime | None = None) -> dict[str, list[dict]]:
    """Everything due delivered; each request verified with its endpoint's secret, by path."""
    await delivery.deliver_due(now=now, allow_loopback=True)
    found: dict[str, list[dict]] = {}
    for request in receiver.requests:
        verified = receiver.verify(secrets[request.path], request)
        assert verified == json.loads(request.body)
        found.setdefault(request.path, []).append(verified)
    return found


def iso_utc(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_an_answered_application_is_told_to_its_publisher_with_the_reason(
    client, settings, receiver, webhook_endpoint
):
    advertiser_id, email = await make_advertiser()
    await login(client, email)
    advertiser = CurrentUser(id=advertiser_id, email=email, role=Role.advertiser, via="test")
    campaign_id = await campaigns.create_campaign(advertiser, campaign_form(visibility="approval"))
    secrets, members = {}, {}
    for name in ("accepted", "declined", "elsewhere"):
        publisher_id, publisher_email = await make_publisher(settings, display_name=name)
        publisher = CurrentUser(id=publisher_id, email=publisher_email, role=Role.publisher, via="test")
        assert await campaigns.join(publisher, campaign_id) == "applied"
        members[name] = (await Membership.select(Membership.id).where(Membership.publisher == publisher_id).first())[
            "id"
        ]
        events = OTHER_EVENTS if name == "elsewhere" else ["application.decided"]
        _, secrets[f"/{name}"] = await webhook_endpoint(publisher_id, receiver.url(f"/{name}"), events=events)
    _, secrets["/advertiser"] = await webhook_endpoint(advertiser_id, receiver.url("/advertiser"))

    base = f"/advertiser/campaigns/{campaign_id}/members"
    await client.get(f"/advertiser/campaigns/{campaign_id}")
    assert (await post_form(client, f"{base}/{members['accepted']}/accept", {"note": "Welcome!"})).status_code == 303
    assert (await post_form(client, f"{base}/{members['accepted']}/accept", {"note": "Welcome!"})).status_code == 303
    assert (await post_form(client, f"{base}/{members['declined']}/decline", {"note": "Off topic"})).status_code == 303
    assert (await post_form(client, f"{base}/{members['elsewhere']}/accept")).status_code == 303

    told = await received(receiver, secrets)
    assert set(told) == {"/accepted", "/declined"}  # the advertiser subscribes to it, but it is not theirs
    [accepted], [declined] = told["/accepted"], told["/declined"]
    assert accepted["type"] == declined["type"] == "application.decided"
    assert accepted["data"] == {
        "application_id": members["accepted"],
        "campaign_id": campaign_id,
        "decision": "accepted",
        "status": "approved",
        "reason": "Welcome!",
        "occurred_at": accepted["data"]["occurred_at"],
    }
    assert (declined["data"]["decision"], declined["data"]["status"], declined["data"]["reason"]) == (
        "declined",
        "declined",
        "Off topic",
    )
    assert abs(iso_utc(accepted["data"]["occurred_at"]) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_a_campaign_its_advertiser_cannot_pay_for_is_paused_and_they_are_told(
    client, settings, receiver, webhook_endpoint
):
    setup, click_id, token = await campaign_and_click(settings, client, hold_days=0)
    assert (await postback(client, click_id=click_id, txn_id="unpaid-1", token=token)).json()["status"] == "accepted"
    secrets = {}
    _, secrets["/advertiser"] = await webhook_endpoint(
        setup.advertiser.id, receiver.url("/advertiser"), events=["campaign.paused_for_funds"]
    )
    _, secrets["/publisher"] = await webhook_endpoint(setup.publisher.id, receiver.url("/publisher"))
    now = datetime.now(UTC) + timedelta(seconds=5)
    outcome = await approval.run(now=now)
    assert outcome.paused_campaigns == [setup.campaign_id]
    assert (await approval.run(now=now)).paused_campaigns == []  # paused already: told once

    told = await received(receiver, secrets, now)
    assert set(told) == {"/advertiser"}
    [paused] = told["/advertiser"]
    assert paused["type"] == "campaign.paused_for_funds"
    assert paused["data"] == {
        "campaign_id": setup.campaign_id,
        "name": "Spring Boots",
        "status": "paused",
        "currency": "EUR",
        "reason": "balance",
        "message": campaigns.PAUSED_FOR_BALANCE,
        "occurred_at": paused["data"]["occurred_at"],
    }
    assert abs(iso_utc(paused["data"]["occurred_at"]) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_a_reviewer_rejecting_a_held_conversion_or_a_held_publisher_tells_both_owners(
    client, new_client, settings, receiver, webhook_endpoint
):
    admin, _ = await staff_client(new_client, Role.admin, first_page="/admin/conversion-rules")
    floor = {
        "too_fast.enabled": "1",
        "rate_anomaly.enabled": "1",
        "self_conversion.enabled": "1",
        "conversion_rate.enabled": "1",
        "too_fast.floor_seconds": "3",
    }
    assert (await post_form(admin, "/admin/conversion-rules", floor)).status_code == 200
    setup, click_id, token = await campaign_and_click(settings, client)
    secrets = {}
    _, secrets["/advertiser"] = await webhook_endpoint(
        setup.advertiser.id, receiver.url("/advertiser"), events=["conversion.rejected"]
    )
    _, secrets["/publisher"] = await webhook_endpoint(
        setup.publisher.id, receiver.url("/publisher"), events=["conversion.rejected"]
    )
    held = (await postback(client, click_id=click_id, txn_id="instant", token=token)).json()["conversion_id"]
    assert (await Conversion.select(Conversion.held).where(Conversion.id == held).first())["held"] is True

    browser = new_client()
    await login(browser, setup.advertiser.email)
    await browser.get("/advertiser/review")
    rejected = await post_form(browser, f"/advertiser/review/{held}/reject", {"reason": "Bot: 1 s after the click"})
    assert rejected.status_code == 200

    # The publisher held as a whole: finance rejects them, and their pending conversions with them.
    client._transport.client = ("198.51.100.240", 4000)
    later_click = await click_id_of(client, setup.code)
    pending = (await postback(client, click_id=later_click, txn_id="later", token=token)).json()["conversion_id"]
    assert await holds.hold([setup.publisher.id], PublisherRule.shared_payout_account, {}) == [setup.publisher.id]
    hold_id = (await PublisherHold.select(PublisherHold.id).first())["id"]
    finance, _ = await staff_client(new_client, Role.finance, first_page="/finance/review")
    answer = await post_form(finance, f"/finance/review/publishers/{hold_id}/reject", {"reason": "Second account"})
    assert answer.status_code in (200, 303), answer.text

    told = await received(receiver, secrets)
    for path in ("/advertiser", "/publisher"):
        assert [(e["type"], e["data"]["conversion_id"], e["data"]["status_reason"]) for e in told[path]] == [
            ("conversion.rejected", held, "Bot: 1 s after the click"),
            ("conversion.rejected", pending, "Second account"),
        ], path


async def test_a_paid_and_a_refused_payout_line_are_told_to_their_publishers(
    new_client, settings, stripe_local, receiver, webhook_endpoint
):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000, 25_000)
    refused, paid = list(accounts)
    stripe_local.control(
        "POST", f"/_local/accounts/{accounts[refused]}/fail_next_transfer", code="transfers_not_allowed", status="400"
    )
    secrets = {}
    for publisher_id in accounts:
        _, secrets[f"/{publisher_id}"] = await webhook_endpoint(
            publisher_id, receiver.url(f"/{publisher_id}"), events=["payout.paid", "payout.failed"]
        )
        _, secrets[f"/{publisher_id}/other"] = await webhook_endpoint(
            publisher_id, receiver.url(f"/{publisher_id}/other"), events=["conversion.approved"]
        )
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
        assert await execute.execute(batch_id, gateway.client) == "done"  # again: nothing more is told

    lines = {line["publisher"]: line for line in await lines_of(batch_id)}
    told = await received(receiver, secrets)
    assert set(told) == {f"/{refused}", f"/{paid}"}
    [failure] = told[f"/{refused}"]
    assert failure["type"] == "payout.failed"
    assert failure["data"] == {
        "payout_id": lines[refused]["id"],
        "status": "failed",
        "amount_minor": 10_000,
        "currency": "EUR",
        "failure_code": "transfers_not_allowed",
        "occurred_at": failure["data"]["occurred_at"],
    }
    [success] = told[f"/{paid}"]
    assert success["type"] == "payout.paid"
    assert success["data"] == {
        "payout_id": lines[paid]["id"],
        "status": "paid",
        "amount_minor": 25_000,
        "currency": "EUR",
        "stripe_transfer_id": lines[paid]["stripe_transfer_id"],
        "occurred_at": success["data"]["occurred_at"],
    }
    assert lines[paid]["stripe_transfer_id"].startswith("tr_")
    assert await WebhookMessage.count() == 2
