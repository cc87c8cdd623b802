"""The advertiser's API (/api/v1/advertiser) does what the advertiser pages do, through their services:
campaigns, goals and creatives; conversions listed page by page and decided in bulk (money moved once);
publishers and applications; balances and top-ups. Only their own objects: another's id is a 404."""

from __future__ import annotations

import base64
import io

from PIL import Image

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import service as campaigns
from server.campaigns.tables import Campaign, Goal, Link
from server.conversions.tables import Conversion
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from tests.accounts.test_api_keys import create_key
from tests.conversions.factories import pending_conversions
from tests.factories import login, make_advertiser, make_publisher
from tests.tracking.factories import campaign_form, campaign_with_link
from tests.tracking.test_redirect import click, stored_clicks

API = "/api/v1/advertiser"
NEW_CAMPAIGN = {
    "name": "Winter Coats",
    "currency": "EUR",
    "landing_url": "https://shop.example.com/coats",
    "allowed_domains": ["shop.example.com"],
    "fallback_url": "https://fallback.example.org/",
    "category": "fashion",
    "goals": [{"name": "sale", "payout_model": "cpa", "price_minor": 1250, "payout_minor": 1000}],
}


async def key_of(user: CurrentUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await accounts.create_api_key(user, 'advertiser api test'))[1]}"}


async def new_advertiser() -> CurrentUser:
    user_id, email = await make_advertiser()
    return CurrentUser(id=user_id, email=email, role=Role.advertiser, via="test")


async def test_a_campaign_created_by_api_is_on_the_advertisers_pages_and_edits_as_the_form_does(new_client):
    _, email = await make_advertiser()
    browser = new_client()
    await login(browser, email)
    api = new_client()
    api.headers["Authorization"] = f"Bearer {await create_key(browser)}"

    created = await api.post(f"{API}/campaigns", json=NEW_CAMPAIGN)
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert (campaign["status"], campaign["currency"], campaign["allowed_domains"]) == (
        "active",
        "EUR",
        ["shop.example.com"],
    )
    [goal] = campaign["goals"]
    assert (goal["price_minor"], goal["payout_minor"], goal["price_bp"]) == (1250, 1000, None)
    assert "Winter Coats" in (await browser.get("/advertiser/campaigns")).text
    page = await browser.get(f"/advertiser/campaigns/{campaign['id']}")
    assert page.status_code == 200 and "€12.50" in page.text

    # PATCH changes what is sent only; null clears a budget.
    changed = await api.patch(
        f"{API}/campaigns/{campaign['id']}", json={"name": "Winter Coats II", "total_budget_minor": 50_000}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["total_budget_minor"]) == ("Winter Coats II", 50_000)
    assert changed.json()["landing_url"] == "https://shop.example.com/coats"
    cleared = await api.patch(f"{API}/campaigns/{campaign['id']}", json={"total_budget_minor": None})
    assert cleared.json()["total_budget_minor"] is None

    # Goals: a revshare goal added, the first repriced; the form's checks name the JSON field.
    added = await api.post(
        f"{API}/campaigns/{campaign['id']}/goals", json={"name": "share", "payout_model": "revshare", "price_bp": 750}
    )
    assert added.status_code == 201, added.text
    assert (added.json()["price_bp"], added.json()["payout_bp"], added.json()["position"]) == (750, 600, 1)
    repriced = await api.patch(f"{API}/goals/{goal['id']}", json={"price_minor": 2000})
    assert repriced.status_code == 200, repriced.text
    assert (repriced.json()["price_minor"], repriced.json()["payout_minor"]) == (2000, 1000)
    too_much = await api.patch(f"{API}/goals/{goal['id']}", json={"payout_minor": 2500})
    assert too_much.status_code == 422
    assert too_much.json()["error"]["field"] == "payout_minor"
    goals = (await api.get(f"{API}/campaigns/{campaign['id']}/goals")).json()["items"]
    assert [(g["name"], g["price_minor"], g["price_bp"]) for g in goals] == [("sale", 2000, None), ("share", None, 750)]

    # Amounts are integers: a float is refused before anything is stored; so is a landing page
    # off the allowed domains, naming the field.
    floats = await api.post(
        f"{API}/campaigns",
        json={**NEW_CAMPAIGN, "goals": [{"name": "sale", "payout_model": "cpa", "price_minor": 12.5}]},
    )
    assert floats.status_code == 400, floats.text
    off_domain = await api.post(f"{API}/campaigns", json={**NEW_CAMPAIGN, "landing_url": "https://elsewhere.example/"})
    assert off_domain.status_code == 422 and off_domain.json()["error"]["field"] == "landing_url"
    wrong_pair = await api.post(
        f"{API}/campaigns", json={**NEW_CAMPAIGN, "goals": [{"name": "sale", "payout_model": "cpa", "price_bp": 500}]}
    )
    assert wrong_pair.status_code == 422 and wrong_pair.json()["error"]["field"] == "goals[0].price_bp"
    assert await Campaign.count() == 1

    listing = (await api.get(f"{API}/campaigns")).json()
    assert [c["id"] for c in listing["items"]] == [campaign["id"]] and listing["next_cursor"] is None
    assert listing["items"][0]["funded"] is False
    assert (await api.get(f"{API}/campaigns", params={"status": "paused"})).json()["items"] == []


async def test_pausing_by_api_sends_its_links_clicks_to_the_fallback_as_campaign_paused(app, client, settings):
    s = await campaign_with_link(settings)
    headers = await key_of(s.advertiser)
    paused = await client.post(f"{API}/campaigns/{s.campaign_id}/pause", headers=headers)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    response = await click(client, s.code)
    assert response.headers["location"] == "https://fallback.example.org/"
    assert [r["reason"] for r in await stored_clicks(app)] == ["campaign_paused"]
    again = await client.post(f"{API}/campaigns/{s.campaign_id}/pause", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["message"]
    resumed = await client.post(f"{API}/campaigns/{s.campaign_id}/resume", headers=headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    unsure = await client.post(f"{API}/campaigns/{s.campaign_id}/end", headers=headers, json={"confirm": False})
    assert unsure.status_code == 422 and unsure.json()["error"]["field"] == "confirm"
    ended = await client.post(f"{API}/campaigns/{s.campaign_id}/end", headers=headers, json={"confirm": True})
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    edit = await client.patch(f"{API}/campaigns/{s.campaign_id}", headers=headers, json={"name": "Too late"})
    assert edit.status_code == 409


async def statuses(ids: list[int]) -> list[str]:
    rows = await Conversion.select(Conversion.id, Conversion.status).where(Conversion.id.is_in(ids))
    return [{r["id"]: r["status"] for r in rows}[i] for i in ids]


async def ids_of(campaign_id: int) -> list[int]:
    rows = await Conversion.select(Conversion.id).where(Conversion.campaign == campaign_id).order_by(Conversion.id)
    return [r["id"] for r in rows]


async def test_decisions_in_bulk_answer_each_item_in_order(client, new_client, settings):
    setup = await pending_conversions(settings, client, 3, fund=5_000)
    other = await pending_conversions(settings, client, 1, name="Other Shop")
    a, b, c = await ids_of(setup.campaign_id)
    [foreign] = await ids_of(other.campaign_id)
    api = new_client()
    api.headers.update(await key_of(setup.advertiser))
    response = await api.post(
        f"{API}/conversions/decisions",
        json={
            "decisions": [
                {"conversion_id": a, "action": "approve"},
                {"conversion_id": a, "action": "approve"},
                {"conversion_id": b, "action": "reject", "reason": "Order cancelled"},
                {"conversion_id": c, "action": "reverse", "reason": "Refund"},
                {"conversion_id": foreign, "action": "approve"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["conversion_id"], r["result"], r["status"], r["code"]) for r in results] == [
        (a, "applied", "approved", None),
        (a, "already", "approved", None),
        (b, "applied", "rejected", None),
        (c, "refused", "pending", "not_approved"),
        (foreign, "refused", None, "not_found"),
    ]
    assert results[3]["message"]
    assert await statuses([a, b, c, foreign]) == ["approved", "rejected", "pending", "pending"]
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 4_000  # charged once


async def test_a_reject_without_reason_is_a_422_naming_the_field_and_nothing_changes(client, new_client, settings):
    setup = await pending_conversions(settings, client, 2, fund=5_000)
    a, b = await ids_of(setup.campaign_id)
    api = new_client()
    api.headers.update(await key_of(setup.advertiser))
    response = await api.post(
        f"{API}/conversions/decisions",
        json={"decisions": [{"conversion_id": a, "action": "approve"}, {"conversion_id": b, "action": "reject"}]},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "decisions[1].reason"
    assert await statuses([a, b]) == ["pending", "pending"]
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 5_000
    too_many = await api.post(
        f"{API}/conversions/decisions", json={"decisions": [{"conversion_id": a, "action": "approve"}] * 501}
    )
    assert too_many.status_code == 400


async def test_reversing_by_api_refunds_the_advertiser_exactly_once(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    [conversion_id] = await ids_of(setup.campaign_id)
    api = new_client()
    api.headers.update(await key_of(setup.advertiser))

    async def decide(action: str, reason: str | None = None) -> dict:
        response = await api.post(
            f"{API}/conversions/decisions",
            json={"decisions": [{"conversion_id": conversion_id, "action": action, "reason": reason}]},
        )
        assert response.status_code == 200, response.text
        return response.json()["results"][0]

    async def balance() -> int:
        [eur] = [b for b in (await api.get(f"{API}/balances")).json()["items"] if b["currency"] == "EUR"]
        return eur["balance_minor"]

    assert (await decide("approve"))["result"] == "applied"
    assert await balance() == 4_000
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 800
    assert (await decide("reverse", "Customer returned the boots"))["result"] == "applied"
    assert await balance() == 5_000 == await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id)
    assert (await decide("reverse", "Again"))["result"] == "already"
    assert (await decide("approve"))["code"] == "not_pending"
    assert await balance() == 5_000
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 0
    assert await ledger.balance(K.network_revenue, "EUR") == 0
    assert await ledger.check() == []
    shown = (await api.get(f"{API}/conversions/{conversion_id}")).json()
    assert (shown["status"], shown["status_reason"], shown["price_minor"]) == (
        "reversed",
        "Customer returned the boots",
        1000,
    )


async def test_paging_through_all_conversions_returns_each_once_and_filters_narrow(client, new_client, settings):
    setup = await pending_conversions(settings, client, 5)
    every = await ids_of(setup.campaign_id)
    api = new_client()
    api.headers.update(await key_of(setup.advertiser))
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await api.get(f"{API}/conversions", params=params)).json()
        seen += [c["id"] for c in body["items"]]
        assert all("@" not in c["publisher_name"] for c in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(every, reverse=True)
    one = (await api.get(f"{API}/conversions", params={"txn_id": "Spring Boots-order-3"})).json()["items"]
    assert [c["txn_id"] for c in one] == ["Spring Boots-order-3"]
    assert (await api.get(f"{API}/conversions", params={"status": "approved"})).json()["items"] == []
    assert len((await api.get(f"{API}/conversions", params={"source": "postback"})).json()["items"]) == 5
    assert (await api.get(f"{API}/conversions", params={"source": "pixel"})).json()["items"] == []
    assert len((await api.get(f"{API}/conversions", params={"since": "2000-01-01"})).json()["items"]) == 5
    assert (await api.get(f"{API}/conversions", params={"until": "2000-01-01"})).json()["items"] == []
    bad = await api.get(f"{API}/conversions", params={"since": "2026-02-30"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "since"
    assert (await api.get(f"{API}/conversions", params={"cursor": "nonsense"})).status_code == 400
    past_every_id = await api.get(f"{API}/conversions", params={"cursor": "9" * 18})
    assert past_every_id.status_code == 200 and len(past_every_id.json()["items"]) == 5


async def test_an_application_accepted_by_api_lets_the_publishers_link_work(client, new_client, settings):
    adv = await new_advertiser()
    campaign_id = await campaigns.create_campaign(adv, campaign_form(visibility="approval"))
    pub_id, pub_email = await make_publisher(settings, display_name="Coat Blog")
    publisher = CurrentUser(id=pub_id, email=pub_email, role=Role.publisher, via="test")
    assert await campaigns.join(publisher, campaign_id) == "applied"
    declined_id, declined_email = await make_publisher(settings, display_name="Spam Blog")
    await campaigns.join(CurrentUser(id=declined_id, email=declined_email, role=Role.publisher, via="t"), campaign_id)
    api = new_client()
    api.headers.update(await key_of(adv))

    waiting = await api.get(f"{API}/applications")
    assert waiting.status_code == 200
    assert pub_email not in waiting.text and declined_email not in waiting.text
    by_name = {a["publisher_name"]: a for a in waiting.json()["items"]}
    assert set(by_name) == {"Coat Blog", "Spam Blog"}
    assert by_name["Coat Blog"]["publisher_site"] == "https://blog.affnet.example"
    assert not await Link.exists().where(Link.publisher == pub_id)

    accepted = await api.post(f"{API}/applications/{by_name['Coat Blog']['id']}/accept")
    assert accepted.status_code == 200 and accepted.json()["status"] == "approved"
    declined = await api.post(f"{API}/applications/{by_name['Spam Blog']['id']}/decline", json={"reason": "Off topic"})
    assert declined.status_code == 200 and (declined.json()["status"], declined.json()["note"]) == (
        "declined",
        "Off topic",
    )
    link = await Link.select(Link.code).where(Link.publisher == pub_id).first()
    response = await click(client, link["code"])
    assert response.status_code == 302 and response.headers["location"].startswith("https://shop.example.com/boots")

    assert (await api.get(f"{API}/applications")).json()["items"] == []
    members = (await api.get(f"{API}/publishers")).json()["items"]
    assert {(m["publisher_name"], m["status"]) for m in members} == {
        ("Coat Blog", "approved"),
        ("Spam Blog", "declined"),
    }
    assert pub_email not in (await api.get(f"{API}/publishers")).text

    guest_id, guest_email = await make_publisher(settings, display_name="Guest Blog")
    invited = await api.post(f"{API}/campaigns/{campaign_id}/invitations", json={"publisher_email": guest_email})
    assert invited.status_code == 201, invited.text
    assert (invited.json()["publisher_id"], invited.json()["status"]) == (guest_id, "invited")
    assert guest_email not in invited.text
    twice = await api.post(f"{API}/campaigns/{campaign_id}/invitations", json={"publisher_email": guest_email})
    assert twice.status_code == 409


async def test_creatives_text_and_image_by_json_and_archived(new_client, settings):
    adv = await new_advertiser()
    campaign_id = await campaigns.create_campaign(adv, campaign_form())
    api = new_client()
    api.headers.update(await key_of(adv))
    text = await api.post(
        f"{API}/campaigns/{campaign_id}/creatives", json={"kind": "text", "name": "Short", "text": "Warm boots"}
    )
    assert text.status_code == 201, text.text
    png = io.BytesIO()
    Image.new("RGB", (300, 250), "red").save(png, "PNG")
    image = await api.post(
        f"{API}/campaigns/{campaign_id}/creatives",
        json={"kind": "image", "name": "Banner", "image_base64": base64.b64encode(png.getvalue()).decode()},
    )
    assert image.status_code == 201, image.text
    assert (image.json()["iab_size"], image.json()["mime_type"]) == ("300x250", "image/png")
    assert (await new_client().get(image.json()["url"])).status_code == 200
    not_image = await api.post(
        f"{API}/campaigns/{campaign_id}/creatives",
        json={"kind": "image", "name": "Bad", "image_base64": base64.b64encode(b"<svg/>").decode()},
    )
    assert not_image.status_code == 422 and not_image.json()["error"]["field"] == "image_base64"
    archived = await api.post(f"{API}/campaigns/{campaign_id}/creatives/{text.json()['id']}/archive")
    assert archived.status_code == 200 and archived.json()["archived"] is True
    live = (await api.get(f"{API}/campaigns/{campaign_id}/creatives", params={"archived": "false"})).json()
    assert [c["name"] for c in live["items"]] == ["Banner"]


async def test_fundings_start_at_stripe_checkout_and_are_listed(new_client):
    adv = await new_advertiser()
    api = new_client()
    api.headers.update(await key_of(adv))
    started = await api.post(f"{API}/fundings", json={"amount_minor": 10_000, "currency": "EUR"})
    assert started.status_code == 201, started.text
    assert started.json()["checkout_url"].startswith("http")
    [funding] = (await api.get(f"{API}/fundings")).json()["items"]
    assert (funding["amount_minor"], funding["currency"], funding["status"]) == (10_000, "EUR", "open")
    tiny = await api.post(f"{API}/fundings", json={"amount_minor": 1, "currency": "EUR"})
    assert tiny.status_code == 422 and tiny.json()["error"]["field"] == "amount_minor"
    [eur] = [b for b in (await api.get(f"{API}/balances")).json()["items"] if b["currency"] == "EUR"]
    assert eur["balance_minor"] == 0  # credited only when Stripe confirms the payment


async def test_another_advertisers_ids_are_404_and_a_publisher_key_is_403(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1)
    [conversion_id] = await ids_of(setup.campaign_id)
    goal = await Goal.select(Goal.id).where(Goal.campaign == setup.campaign_id).first()
    [(_, membership)] = await campaigns.members_of(setup.advertiser, limit=1)
    stranger = new_client()
    stranger.headers.update(await key_of(await new_advertiser()))
    c = setup.campaign_id
    for method, path, body in [
        ("GET", f"/campaigns/{c}", None),
        ("PATCH", f"/campaigns/{c}", {"name": "Mine now"}),
        ("POST", f"/campaigns/{c}/pause", None),
        ("POST", f"/campaigns/{c}/end", {"confirm": True}),
        ("POST", f"/campaigns/{c}/invitations", {"publisher_email": setup.publisher_email}),
        ("GET", f"/campaigns/{c}/goals", None),
        ("POST", f"/campaigns/{c}/goals", {"name": "lead", "payout_model": "cpl", "price_minor": 100}),
        ("PATCH", f"/goals/{goal['id']}", {"price_minor": 1}),
        ("GET", f"/campaigns/{c}/creatives", None),
        ("POST", f"/campaigns/{c}/creatives", {"kind": "text", "name": "x", "text": "y"}),
        ("GET", f"/conversions/{conversion_id}", None),
        ("POST", f"/applications/{membership.id}/decline", {"reason": "no"}),
    ]:
        response = await stranger.request(method, API + path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    assert (await stranger.get(f"{API}/conversions")).json()["items"] == []
    assert (await stranger.get(f"{API}/publishers")).json()["items"] == []
    assert (await Campaign.select(Campaign.name, Campaign.status).first()) == {
        "name": "Spring Boots",
        "status": "active",
    }

    publisher = new_client()
    publisher.headers.update(await key_of(setup.publisher))
    for path in ("/campaigns", "/conversions", "/balances", "/publishers"):
        response = await publisher.get(API + path)
        assert response.status_code == 403 and response.json()["error"]["code"] == "wrong_role"


async def test_a_retried_create_with_its_idempotency_key_makes_one_campaign_and_a_read_only_key_changes_nothing(
    new_client,
):
    adv = await new_advertiser()
    api = new_client()
    api.headers.update(await key_of(adv))
    first = await api.post(f"{API}/campaigns", json=NEW_CAMPAIGN, headers={"Idempotency-Key": "coats-1"})
    again = await api.post(f"{API}/campaigns", json=NEW_CAMPAIGN, headers={"Idempotency-Key": "coats-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and await Campaign.count() == 1
    other = await api.post(
        f"{API}/campaigns", json={**NEW_CAMPAIGN, "name": "Other"}, headers={"Idempotency-Key": "coats-1"}
    )
    assert other.status_code == 409

    reader = new_client()
    reader.headers["Authorization"] = f"Bearer {(await accounts.create_api_key(adv, 'dashboard', scope='read'))[1]}"
    assert (await reader.get(f"{API}/campaigns/{first.json()['id']}")).status_code == 200
    refused = await reader.post(f"{API}/campaigns/{first.json()['id']}/pause")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "read_only_key"
    assert (await Campaign.select(Campaign.status).first())["status"] == "active"


async def test_options_lists_every_method_of_an_address(new_client):
    adv = await new_advertiser()
    campaign_id = await campaigns.create_campaign(adv, campaign_form())
    api = new_client()
    api.headers.update(await key_of(adv))
    for path, allowed in (
        ("/campaigns", "GET, OPTIONS, POST"),
        (f"/campaigns/{campaign_id}", "GET, OPTIONS, PATCH"),
        (f"/campaigns/{campaign_id}/goals", "GET, OPTIONS, POST"),
        (f"/campaigns/{campaign_id}/creatives", "GET, OPTIONS, POST"),
        ("/fundings", "GET, OPTIONS, POST"),
        ("/balances", "GET, OPTIONS"),
    ):
        response = await api.options(API + path)
        assert (response.status_code, response.headers["allow"]) == (204, allowed), path
