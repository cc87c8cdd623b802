"""Publishers' Stripe Connect onboarding against the local Stripe stand-in, through the real SDK and signed
webhooks: one account per publisher however often they click, an idempotency key on every POST, the
state set only by Stripe (its `account.updated` on the Connect endpoint, newest wins, duplicates change
nothing, or the account read when the publisher returns), each webhook endpoint refusing the other's
events, and privacy between publishers."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role, User
from server.billing import stripe_api
from server.core import money
from server.core.errors import Conflict
from server.payouts import connect
from server.payouts.account_tables import PayoutAccount
from server.stripe_events import service as stripe_events
from server.stripe_events.tables import StripeEvent
from tests.billing.helpers import sign
from tests.factories import login, make_advertiser, make_publisher, post_form
from tests.payouts.factories import earning_publisher
from tests.stripe_fixtures import StripeLocal, deliver

SETUP = "/publisher/payouts/setup"


async def local_requests(stripe_local: StripeLocal) -> list[dict[str, Any]]:
    return stripe_local.control("GET", "/_local/requests").json()["data"]


async def account_events(stripe_local: StripeLocal, account_id: str) -> list[dict[str, Any]]:
    """The stand-in's account.updated events about one account, oldest first."""
    async with httpx.AsyncClient(base_url=stripe_local.base_url, timeout=10) as local:
        response = await local.get(
            "/v1/events",
            params={"limit": 100, "type": "account.updated"},
            headers={"Authorization": f"Bearer {stripe_local.secret_key}"},
        )
    events = [e for e in response.json()["data"] if e["data"]["object"]["id"] == account_id]
    return list(reversed(events))


async def process(settings) -> list[str]:
    """What the worker does with the events recorded and not processed yet."""
    rows = (
        await StripeEvent.select(StripeEvent.event_id)
        .where(StripeEvent.processed_at.is_null())
        .order_by(StripeEvent.id)
    )
    async with stripe_api.gateway(settings) as gateway:
        return [await stripe_events.process(r["event_id"], gateway) for r in rows]


async def publisher_client(new_client, settings, *, approved: bool = True) -> tuple[httpx.AsyncClient, int]:
    user_id, email = await make_publisher(settings, approved=approved)
    client = new_client()
    await login(client, email)
    return client, user_id


async def set_up(client: httpx.AsyncClient) -> str:
    """Click "Set up payouts"; the URL of Stripe's onboarding page the browser is handed to."""
    response = await post_form(client, SETUP)
    assert response.status_code == 200, response.text
    url = re.search(r'data-testid="onboarding-link" href="([^"]+)"', response.text).group(1)
    assert f'http-equiv="refresh" content="0;url={url}"' in response.text
    return url


async def stored(publisher_id: int) -> dict[str, Any]:
    rows = await PayoutAccount.select().where(PayoutAccount.publisher == publisher_id)
    assert len(rows) == 1
    return rows[0]


async def stripe_account(settings, account_id: str) -> dict[str, Any]:
    async with connect.gateway(settings) as gateway:
        return (await gateway.client.v1.accounts.retrieve_async(account_id)).to_dict()


async def after_next_second(event: dict[str, Any]) -> None:
    """Stripe's event times are whole seconds: wait until a new event would be stamped later than `event`."""
    await asyncio.sleep(max(0.0, event["created"] + 1 - time.time()))


async def test_setting_up_twice_creates_one_account_and_every_post_has_a_key(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    assert 'data-state="not_set_up"' in (await client.get("/publisher/payouts")).text
    before = len(await local_requests(stripe_local))

    first = await set_up(client)
    second = await set_up(client)  # a second click, a reload, a double submit

    assert first.startswith(stripe_local.base_url + "/connect/onboarding/") and second != first
    made = (await local_requests(stripe_local))[before:]
    posts = [r for r in made if r["method"] == "POST"]
    assert [r["path"] for r in posts] == ["/v1/accounts", "/v1/account_links", "/v1/account_links"]
    assert all(r["idempotency_key"] for r in posts), posts
    row = await stored(publisher_id)
    reference_key = posts[0]["idempotency_key"]
    assert reference_key.startswith(f"payout-account:{publisher_id}:")
    assert row["stripe_account_id"].startswith("acct_")
    account = await stripe_account(settings, row["stripe_account_id"])
    assert account["type"] == "express" and account["metadata"] == {"publisher_id": str(publisher_id)}
    assert account["capabilities"] == {"transfers": "inactive"}


async def test_a_retry_after_a_lost_answer_gets_the_same_account(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    user = CurrentUser(id=publisher_id, email="", role=Role.publisher, via="test")
    # The row is stored, Stripe creates the account, and its answer is lost (a timeout, a crash).
    async with connect.gateway(settings) as gateway:
        with pytest.raises(Conflict):
            await connect._ensure_account(user, _LostAnswer(gateway))
    row = await stored(publisher_id)
    assert row["stripe_account_id"].startswith(connect.PENDING)
    assert 'data-state="not_set_up"' in (await client.get("/publisher/payouts")).text
    lost_id = _LostAnswer.created[-1]

    await set_up(client)  # clicked again: the same key, so Stripe answers with the same account

    assert (await stored(publisher_id))["stripe_account_id"] == lost_id


class _LostAnswer:
    """Stripe creates the account, but the answer never reaches affnet."""

    created: list[str] = []

    def __init__(self, gateway: connect.StripeConnect) -> None:
        self.gateway = gateway

    async def create_account(self, **kw: Any) -> str:
        self.created.append(await self.gateway.create_account(**kw))
        raise httpx.ReadTimeout("the answer was lost")

    async def create_onboarding_link(self, **kw: Any) -> str:
        return await self.gateway.create_onboarding_link(**kw)


async def test_the_return_url_proves_nothing_the_account_is_read_from_stripe(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    back = await client.get("/publisher/payouts/return")
    assert back.status_code == 200 and 'data-state="not_set_up"' in back.text
    await set_up(client)
    account_id = (await stored(publisher_id))["stripe_account_id"]

    # Back from Stripe without finishing, whatever the URL says: Stripe is asked, and says details are due.
    back = await client.get("/publisher/payouts/return?done=1&payouts_enabled=true")
    assert back.status_code == 200 and 'data-state="details_due"' in back.text
    row = await stored(publisher_id)
    assert not row["payouts_enabled"] and not row["details_submitted"] and "external_account" in row["requirements_due"]

    # Finished at Stripe; its account.updated has not arrived (late, or never): the return reads it.
    stripe_local.control("POST", f"/_local/accounts/{account_id}/complete_onboarding")
    back = await client.get("/publisher/payouts/return")
    assert 'data-state="ready"' in back.text and "Ready for payouts" in back.text
    assert 'http-equiv="refresh"' not in back.text
    row = await stored(publisher_id)
    assert row["payouts_enabled"] and row["details_submitted"] and row["requirements_due"] == ""
    reads = [r for r in await local_requests(stripe_local) if r["path"] == f"/v1/accounts/{account_id}"]
    assert [r["method"] for r in reads] == ["GET", "GET"]

    # The event, arriving after, agrees (it changes nothing a newer read stored).
    [event] = await account_events(stripe_local, account_id)
    assert [a.status_code for a in await deliver(client, stripe_local, event["id"])] == [200]
    assert (await process(settings))[0] in ("account state stored", "account: newer state kept")
    assert (await stored(publisher_id))["payouts_enabled"]


async def test_onboarding_completes_through_the_connect_endpoints_event(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    await set_up(client)
    account_id = (await stored(publisher_id))["stripe_account_id"]
    stripe_local.control("POST", f"/_local/accounts/{account_id}/complete_onboarding")
    assert 'data-state="checking"' in (await client.get("/publisher/payouts")).text  # not back yet, no event yet

    [event] = await account_events(stripe_local, account_id)
    assert event["account"] == account_id  # Stripe marks a connected account's event so
    signed = stripe_local.control("GET", f"/_local/events/{event['id']}/signed")
    headers = {"stripe-signature": signed.headers["stripe-signature"], "content-type": "application/json"}
    # Signed with the Connect endpoint's secret, it is no platform event.
    assert (await client.post("/stripe/webhook", content=signed.content, headers=headers)).status_code == 400
    answer = await client.post("/stripe/connect-webhook", content=signed.content, headers=headers)
    assert answer.status_code == 200 and answer.json()["duplicate"] is False
    assert await process(settings) == ["account state stored"]
    assert 'data-state="ready"' in (await client.get("/publisher/payouts")).text


async def test_each_endpoint_refuses_the_other_endpoints_events(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    await set_up(client)
    account_id = (await stored(publisher_id))["stripe_account_id"]
    stripe_local.control("POST", f"/_local/accounts/{account_id}/complete_onboarding")
    [event] = await account_events(stripe_local, account_id)
    body = stripe_local.control("GET", f"/_local/events/{event['id']}/signed").content
    without_account = json.dumps({k: v for k, v in json.loads(body).items() if k != "account"}).encode()
    platform, connect_secret = settings.stripe_webhook_secret, settings.stripe_connect_webhook_secret
    refused = [
        ("/stripe/connect-webhook", body, platform),  # an account event signed with the platform's secret
        ("/stripe/webhook", body, connect_secret),  # a Connect event on the platform endpoint
        ("/stripe/webhook", body, platform),  # signed right, but a connected account's event: wrong endpoint
        ("/stripe/connect-webhook", without_account, connect_secret),  # no account: not a Connect event
    ]
    for path, payload, secret in refused:
        answer = await client.post(path, content=payload, headers={"stripe-signature": sign(payload, secret)})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_webhook", (path, answer.text)
    assert await StripeEvent.count() == 0

    # The platform's own account.updated (no `account`), properly signed, changes no publisher's account;
    # nor does a connected account's event about another account.
    forged = json.dumps({**json.loads(without_account), "id": "evt_platform_own"}).encode()
    assert (
        await client.post("/stripe/webhook", content=forged, headers={"stripe-signature": sign(forged, platform)})
    ).status_code == 200
    other = json.dumps({**json.loads(body), "id": "evt_other_account", "account": "acct_someone_else"}).encode()
    assert (
        await client.post(
            "/stripe/connect-webhook", content=other, headers={"stripe-signature": sign(other, connect_secret)}
        )
    ).status_code == 200
    assert sorted(await process(settings)) == [
        "ignored: not a connected account's event",
        "ignored: the event is about another account than its own",
    ]
    row = await stored(publisher_id)
    assert row["state_at"] is None and not row["payouts_enabled"]


async def test_account_updated_out_of_order_keeps_the_newest_state(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    await set_up(client)
    account_id = (await stored(publisher_id))["stripe_account_id"]
    stripe_local.control("POST", f"/_local/accounts/{account_id}/complete_onboarding")
    [completed] = await account_events(stripe_local, account_id)
    await after_next_second(completed)
    stripe_local.control("POST", f"/_local/accounts/{account_id}/restrict")
    [_, restricted] = await account_events(stripe_local, account_id)
    assert restricted["created"] > completed["created"]

    await deliver(client, stripe_local, restricted["id"])  # the newer event first
    assert await process(settings) == ["account state stored"]
    await deliver(client, stripe_local, completed["id"])
    assert await process(settings) == ["account: newer state kept"]

    row = await stored(publisher_id)
    assert row["details_submitted"] and not row["payouts_enabled"]
    assert row["requirements_due"] == "individual.verification.document"
    assert row["disabled_reason"] == "requirements.past_due"
    assert int(row["state_at"].timestamp()) == restricted["created"]
    assert 'data-state="restricted"' in (await client.get("/publisher/payouts")).text


async def test_account_updated_delivered_five_times_changes_nothing_more(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    await set_up(client)
    account_id = (await stored(publisher_id))["stripe_account_id"]
    stripe_local.control("POST", f"/_local/accounts/{account_id}/complete_onboarding")
    [event] = await account_events(stripe_local, account_id)

    answers = await deliver(client, stripe_local, event["id"], times=5)
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True, True]
    assert await process(settings) == ["account state stored"]
    once = await stored(publisher_id)
    answers = await deliver(client, stripe_local, event["id"], times=5)
    assert await process(settings) == []
    assert await stored(publisher_id) == once
    assert once["payouts_enabled"] and once["details_submitted"] and once["requirements_due"] == ""
    assert once["country"] == "DE" and once["default_currency"] == "EUR"
    assert await StripeEvent.count().where(StripeEvent.event_id == event["id"]) == 1


async def test_a_restricted_account_shows_why(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    await set_up(client)
    account_id = (await stored(publisher_id))["stripe_account_id"]
    stripe_local.control("POST", f"/_local/accounts/{account_id}/complete_onboarding")
    stripe_local.control("POST", f"/_local/accounts/{account_id}/restrict")
    for event in await account_events(stripe_local, account_id):
        await deliver(client, stripe_local, event["id"])
    await process(settings)

    page = (await client.get("/publisher/payouts")).text
    assert 'data-state="restricted"' in page and "Restricted: payouts are stopped" in page
    assert "Stripe needs more information from you, and its deadline has passed." in page
    assert "an identity document" in page
    assert 'data-testid="payout-account-not-ready"' in page
    assert "Continue on Stripe" in page  # the way to give Stripe what it asks for

    key = (
        await accounts.create_api_key(
            CurrentUser(id=publisher_id, email="", role=Role.publisher, via="test"), "payouts"
        )
    )[1]
    api = await new_client().get("/api/v1/publisher/payout-account", headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 200
    body = api.json()
    assert body["state"] == "restricted" and body["stripe_account_id"] == account_id
    assert body["disabled_reason"] == "requirements.past_due"
    assert body["requirements_due"] == ["individual.verification.document"]
    assert body["details_submitted"] is True and body["payouts_enabled"] is False


async def test_a_details_due_account_lists_what_stripe_asks_for(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    await set_up(client)
    account_id = (await stored(publisher_id))["stripe_account_id"]
    account = await stripe_account(settings, account_id)
    # The state Stripe reports for an account whose onboarding is not finished, as Stripe would send it.
    assert await connect.apply_event("account.updated", account, int(time.time()), account_id) == (
        "account state stored"
    )
    page = (await client.get("/publisher/payouts")).text
    assert 'data-state="details_due"' in page and "the bank account to pay into" in page
    assert "your first name" in page and "Continue on Stripe" in page


async def test_another_publisher_never_sees_or_touches_the_account(new_client, settings, stripe_local):
    alice, alice_id = await publisher_client(new_client, settings)
    await set_up(alice)
    alice_account = (await stored(alice_id))["stripe_account_id"]
    bob, bob_id = await publisher_client(new_client, settings)

    for path in ("/publisher/payouts", "/publisher/payouts/return", "/publisher/payouts/refresh"):
        page = await bob.get(path)
        assert page.status_code == 200 and alice_account not in page.text and 'data-state="not_set_up"' in page.text
    key = (await accounts.create_api_key(CurrentUser(id=bob_id, email="", role=Role.publisher, via="test"), "payouts"))[
        1
    ]
    api = await new_client().get("/api/v1/publisher/payout-account", headers={"Authorization": f"Bearer {key}"})
    assert api.json()["state"] == "not_set_up" and api.json()["stripe_account_id"] == ""

    await set_up(bob)  # Bob's own account, never Alice's
    bob_account = (await stored(bob_id))["stripe_account_id"]
    assert bob_account != alice_account
    assert (await stored(alice_id))["stripe_account_id"] == alice_account
    assert await PayoutAccount.count() == 2


async def test_refresh_makes_a_fresh_link_for_the_same_account(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings)
    first = await set_up(client)
    before = len(await local_requests(stripe_local))
    page = await client.get("/publisher/payouts/refresh")
    assert page.status_code == 200
    url = re.search(r'data-testid="onboarding-link" href="([^"]+)"', page.text).group(1)
    assert url != first and url.startswith(stripe_local.base_url + "/connect/onboarding/")
    made = [(r["method"], r["path"]) for r in (await local_requests(stripe_local))[before:]]
    assert made == [("POST", "/v1/account_links")]
    assert await PayoutAccount.count() == 1


async def test_unknown_accounts_are_ignored(client, settings, stripe_local):
    async with connect.gateway(settings) as gateway:  # an account made at Stripe, not by affnet
        stranger = (
            await gateway.client.v1.accounts.create_async(
                {"type": "express"}, {"idempotency_key": f"test-stranger-{time.time_ns()}"}
            )
        ).id
    stripe_local.control("POST", f"/_local/accounts/{stranger}/complete_onboarding")
    [event] = await account_events(stripe_local, stranger)
    await deliver(client, stripe_local, event["id"])
    assert await process(settings) == ["ignored: unknown account"]
    assert await PayoutAccount.count() == 0


async def test_a_publisher_not_approved_yet_cannot_set_up_payouts(new_client, settings, stripe_local):
    client, publisher_id = await publisher_client(new_client, settings, approved=False)
    page = await client.get("/publisher/payouts")
    assert 'data-testid="payouts-not-approved"' in page.text and f'action="{SETUP}"' not in page.text
    before = len(await local_requests(stripe_local))
    response = await post_form(client, SETUP)
    assert response.status_code == 409 and "once your publisher account is approved" in response.text
    assert len(await local_requests(stripe_local)) == before
    assert await PayoutAccount.count() == 0


async def test_advertisers_are_refused(new_client, settings, stripe_local):
    user_id, email = await make_advertiser()
    client = new_client()
    await login(client, email)
    assert (await client.get("/publisher/payouts")).status_code == 403
    assert (await post_form(client, SETUP)).status_code == 403
    assert (await client.get("/publisher/payouts/return")).status_code == 403
    key = (
        await accounts.create_api_key(CurrentUser(id=user_id, email=email, role=Role.advertiser, via="test"), "payouts")
    )[1]
    api = await new_client().get("/api/v1/publisher/payout-account", headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 403 and api.json()["error"]["code"] == "wrong_role"
    assert await PayoutAccount.count() == 0


async def login_as(new_client, publisher_id: int) -> httpx.AsyncClient:
    email = (await User.select(User.email).where(User.id == publisher_id).first())["email"]
    client = new_client()
    await login(client, email)
    return client


async def test_the_page_shows_the_money_and_why_the_next_payout_would_skip(new_client, settings, stripe_local):
    publisher_id = await earning_publisher(settings, 20_000, owed=1_000, ready=None)  # no payout account
    page = (await (await login_as(new_client, publisher_id)).get("/publisher/payouts")).text
    row = re.search(r'data-testid="payout-balance" data-currency="EUR">(.*?)</tr>', page, re.S).group(1)
    assert money.display(20_000, "EUR") in row and money.display(1_000, "EUR") in row
    assert re.search(r'data-testid="next-payout" data-currency="EUR" data-will-be-paid="no"', page)
    assert '<span data-testid="payout-skip-reason">the payout account cannot receive payouts yet</span>' in page
    assert 'data-testid="payout-account-not-ready"' in page

    small = await earning_publisher(settings, 300, ready=True)
    page = (await (await login_as(new_client, small)).get("/publisher/payouts")).text
    assert '<span data-testid="payout-skip-reason">below the minimum payout</span>' in page
    assert "the minimum is" in page


async def test_the_page_shows_what_the_next_payout_pays(new_client, settings, stripe_local):
    publisher_id = await earning_publisher(settings, 200_000, owed=1_000, ready=True)
    page = (await (await login_as(new_client, publisher_id)).get("/publisher/payouts")).text
    assert 'data-state="ready"' in page
    assert re.search(r'data-testid="next-payout" data-currency="EUR" data-will-be-paid="yes"', page)
    assert f'<strong data-testid="next-payout-amount">{money.display(199_000, "EUR")}</strong>' in page
    assert 'data-testid="payout-account-not-ready"' not in page
