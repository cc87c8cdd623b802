"""A publisher's postback template is called when their conversion is recorded and, if they chose,
when it is approved: once each, its macros filled in URL-encoded with their click's values and their
payout as a decimal, the campaign's own template winning over their global one. A repeated or
refused postback calls nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from server.conversions import approval
from server.ledger import postings
from server.webhooks import delivery, service
from server.webhooks.tables import WebhookMessage
from tests.conversions.factories import BROWSER, postback, secrets_of
from tests.tracking.factories import campaign_with_link

MACROS = (
    "click={click_id}&s1={sub1}&s2={sub2}&s3={sub3}&s4={sub4}&s5={sub5}&txn={txn_id}&payout={payout}"
    "&cur={currency}&status={status}&cid={campaign_id}"
)


async def clicked(app, client, setup, **subs: str) -> str:
    response = await client.get(f"/c/{setup.code}", params=subs, headers={"user-agent": BROWSER})
    assert response.status_code == 302
    await app.state.click_buffer.flush()  # its row stored, as it is within half a second
    return response.headers["location"].split("click_id=")[1].split("&")[0]


async def calls(receiver, now: datetime | None = None) -> list:
    await delivery.deliver_due(now=now, allow_loopback=True)
    found = list(receiver.requests)
    receiver.clear()
    return found


async def test_the_global_template_fires_once_on_recorded_and_once_on_approved_with_encoded_macros(
    app, client, settings, receiver, clean
):
    setup = await campaign_with_link(settings, hold_days=0, goal_0_advertiser="15.00")
    await service.save_template(
        setup.publisher.id,
        None,
        receiver.url("/pb") + "?" + MACROS,
        on_recorded=True,
        on_approved=True,
        allow_loopback=True,
    )
    click_id = await clicked(app, client, setup, sub1="summer sale", sub2="a&b=c", sub5="é/ü")
    token = (await secrets_of(setup.campaign_id))["postback_secret"]
    answer = await postback(client, click_id=click_id, txn_id="order-1", token=token)
    conversion = answer.json()
    assert conversion["status"] == "accepted"
    assert (await postback(client, click_id=click_id, txn_id="order-1", token=token)).json()["duplicate"]
    assert (await postback(client, click_id=click_id, txn_id="order-2", token="wrong")).status_code == 401

    [recorded] = await calls(receiver)
    assert (recorded.method, recorded.path) == ("GET", "/pb")
    payout = conversion["payout"]["publisher_minor"]
    expected = {
        "click": click_id,
        "s1": "summer sale",
        "s2": "a&b=c",
        "s3": "",
        "s4": "",
        "s5": "é/ü",
        "txn": str(conversion["conversion_id"]),  # affnet's id: the advertiser's order id stays theirs
        "payout": f"{payout // 100}.{payout % 100:02d}",
        "cur": "EUR",
        "status": "pending",
        "cid": str(setup.campaign_id),
    }
    assert parse_qs(recorded.query, keep_blank_values=True) == {k: [v] for k, v in expected.items()}
    # Encoded, so a value never adds or breaks a parameter.
    assert "s1=summer%20sale&s2=a%26b%3Dc&" in recorded.query and "s5=%C3%A9%2F%C3%BC&" in recorded.query

    await postings.fund_advertiser(setup.advertiser.id, 10_000, "EUR", reference_id=1, key="fund-pb")
    now = datetime.now(UTC) + timedelta(seconds=5)
    assert (await approval.run(now=now)).approved == 1
    assert (await approval.run(now=now)).approved == 0
    [approved] = await calls(receiver, now)
    assert parse_qs(approved.query, keep_blank_values=True) == {
        k: [v] for k, v in {**expected, "status": "approved"}.items()
    }
    assert await calls(receiver, now) == []  # once each


async def test_the_campaigns_own_template_wins_over_the_global_one(app, client, settings, receiver, clean):
    setup = await campaign_with_link(settings, hold_days=0)
    other = await campaign_with_link(settings, hold_days=0, name="Winter Hats")
    for publisher_id, campaign_id in ((setup.publisher.id, None), (setup.publisher.id, setup.campaign_id)):
        await service.save_template(
            publisher_id,
            campaign_id,
            receiver.url("/global" if campaign_id is None else "/own") + "?" + MACROS,
            on_recorded=True,
            on_approved=campaign_id is None,  # the campaign's own fires on recorded only
            member_of=frozenset({setup.campaign_id}),
            allow_loopback=True,
        )
    click_id = await clicked(app, client, setup, sub1="mine")
    token = (await secrets_of(setup.campaign_id))["postback_secret"]
    assert (await postback(client, click_id=click_id, txn_id="o-1", token=token)).json()["status"] == "accepted"
    # Another publisher's conversion (who set no template) calls nothing.
    client._transport.client = ("198.51.100.230", 4000)
    other_click = await clicked(app, client, other)
    other_token = (await secrets_of(other.campaign_id))["postback_secret"]
    assert (await postback(client, click_id=other_click, txn_id="o-2", token=other_token)).status_code == 200

    [recorded] = await calls(receiver)
    assert recorded.path == "/own" and parse_qs(recorded.query)["s1"] == ["mine"]

    for s in (setup, other):
        await postings.fund_advertiser(s.advertiser.id, 10_000, "EUR", reference_id=1, key=f"fund-{s.campaign_id}")
    now = datetime.now(UTC) + timedelta(seconds=5)
    assert (await approval.run(now=now)).approved == 2
    assert await calls(receiver, now) == []  # the campaign's own template does not fire on approved
    assert await WebhookMessage.count() == 1
