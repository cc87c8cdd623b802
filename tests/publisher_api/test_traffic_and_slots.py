"""The publisher API's clicks, conversions and ad slots: their own rows only, filtered and paged."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from server.core import clock
from tests.campaigns.test_publisher_marketplace import make_campaign
from tests.conftest import BASE_URL
from tests.conversions.factories import next_reader, postback, secrets_of
from tests.publisher_api.helpers import advertiser_api, all_pages, browser, publisher_api

BOT = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"


async def joined_link(api, campaign_id: int) -> dict:
    assert (await api.post(f"/campaigns/{campaign_id}/join")).json()["status"] == "approved"
    return (await api.get("/links", campaign_id=campaign_id)).json()["items"][0]


async def click(new_client, link: dict, query: str = "", *, user_agent: str | None = None) -> str:
    """A new reader follows the link; the click id its landing page got ("" when none)."""
    visitor = new_client()
    visitor._transport.client = next_reader()
    response = await visitor.get(
        f"/c/{link['code']}{query}", headers={"user-agent": user_agent or browser()}, follow_redirects=False
    )
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["location"]).query).get("click_id", [""])[0]


async def test_clicks_show_their_reason_and_filter_by_it_by_sub1_and_by_campaign(app, new_client, settings):
    boots = await make_campaign(name="Spring Boots")
    coats = await make_campaign(name="Winter Coats")
    api = await publisher_api(new_client, settings)
    boots_link = await joined_link(api, boots)
    coats_link = await joined_link(api, coats)
    valid_id = await click(new_client, boots_link, "?sub1=spring&sub2=b")
    await click(new_client, boots_link, "?sub1=spring", user_agent=BOT)
    await click(new_client, coats_link, "?sub1=winter")
    await app.state.click_buffer.flush()

    listing = await api.get("/clicks")
    assert listing.status_code == 200, listing.text
    items = listing.json()["items"]
    assert [(c["campaign_id"], c["sub1"], c["reason"]) for c in items] == [
        (coats, "winter", "valid"),
        (boots, "spring", "bot"),
        (boots, "spring", "valid"),
    ]
    first = items[2]
    assert first["click_id"] == valid_id and first["sub2"] == "b" and first["link_id"] == boots_link["id"]
    assert first["reason_text"] == "Valid click" and items[1]["reason_text"] == "Bot or crawler user agent"
    assert "visitor_hash" not in first and "ip" not in first and "203.0.113" not in listing.text

    assert [c["reason"] for c in (await api.get("/clicks", reason="bot")).json()["items"]] == ["bot"]
    assert len((await api.get("/clicks", sub1="spring")).json()["items"]) == 2
    assert {c["campaign_id"] for c in (await api.get("/clicks", campaign_id=coats)).json()["items"]} == {coats}
    assert len((await api.get("/clicks", link_id=boots_link["id"])).json()["items"]) == 2
    today = clock.now().date()
    assert len((await api.get("/clicks", since=today.isoformat(), until=today.isoformat())).json()["items"]) == 3
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert (await api.get("/clicks", since=tomorrow)).json()["items"] == []
    assert (await api.get("/clicks", until=f"{today.isoformat()}T00:00:00Z")).json()["items"] == []

    refused = await api.get("/clicks", reason="lucky")
    assert refused.status_code == 400 and "reason" in refused.json()["error"]["message"]
    for value in ("2026-13-45", "", "yesterday"):
        bad_date = await api.get("/clicks", since=value)
        assert bad_date.status_code == 422 and bad_date.json()["error"]["field"] == "since"
        assert "2026-12-01" in bad_date.json()["error"]["message"]

    # Another publisher in the same campaign sees none of these.
    other = await publisher_api(new_client, settings, display_name="Other Blog")
    await joined_link(other, boots)
    assert (await other.get("/clicks")).json() == {"items": [], "next_cursor": None}
    assert (await other.get("/clicks", link_id=boots_link["id"])).json()["items"] == []


async def test_clicks_page_every_row_once_and_stop(app, new_client, settings):
    campaign_id = await make_campaign()
    api = await publisher_api(new_client, settings)
    link = await joined_link(api, campaign_id)
    for i in range(7):
        await click(new_client, link, f"?sub1=n{i}")
    await app.state.click_buffer.flush()
    items, pages = await all_pages(api, "/clicks", limit=3)
    assert pages == 3
    assert [c["sub1"] for c in items] == [f"n{i}" for i in reversed(range(7))]
    assert len({c["id"] for c in items}) == 7


async def test_conversions_show_payout_and_sub_ids_never_the_advertisers_price(app, new_client, settings):
    campaign_id = await make_campaign()
    other_campaign = await make_campaign(name="Winter Coats")
    api = await publisher_api(new_client, settings)
    link = await joined_link(api, campaign_id)
    other_link = await joined_link(api, other_campaign)
    token = (await secrets_of(campaign_id))["postback_secret"]
    other_token = (await secrets_of(other_campaign))["postback_secret"]
    reporter = new_client()
    for i in range(3):
        click_id = await click(new_client, link, f"?sub1=post-{i}&sub5=z")
        accepted = await postback(reporter, click_id=click_id, txn_id=f"order-{i}", token=token)
        assert accepted.json()["status"] == "accepted", accepted.text
    click_id = await click(new_client, other_link)
    assert (await postback(reporter, click_id=click_id, txn_id="coat", token=other_token)).status_code == 200
    await app.state.click_buffer.flush()

    items, pages = await all_pages(api, "/conversions", limit=2)
    assert pages == 2 and len(items) == 4 and len({c["id"] for c in items}) == 4
    newest_boots = items[1]
    assert newest_boots["campaign_id"] == campaign_id and newest_boots["payout_minor"] == 800
    assert newest_boots["currency"] == "EUR" and newest_boots["status"] == "pending"
    assert (newest_boots["sub1"], newest_boots["sub5"]) == ("post-2", "z")
    for private in ("advertiser_amount", "network_amount", "txn_id", "sale_amount", "order-"):
        assert private not in str(items)

    assert len((await api.get("/conversions", campaign_id=campaign_id)).json()["items"]) == 3
    assert len((await api.get("/conversions", status="pending")).json()["items"]) == 4
    assert (await api.get("/conversions", status="approved")).json()["items"] == []
    tomorrow = (clock.now().date() + timedelta(days=1)).isoformat()
    assert (await api.get("/conversions", since=tomorrow)).json()["items"] == []
    assert (await api.get("/conversions", status="paid")).status_code == 400

    other = await publisher_api(new_client, settings, display_name="Other Blog")
    assert (await other.get("/conversions")).json()["items"] == []


async def test_slots_are_created_listed_with_their_snippet_and_owned(new_client, settings):
    api = await publisher_api(new_client, settings)
    made = await api.post(
        "/slots", {"name": "Sidebar", "format": "300x250", "domains": ["blog.affnet.example", "Www.Affnet.Example"]}
    )
    assert made.status_code == 201, made.text
    slot = made.json()
    assert slot["domains"] == ["blog.affnet.example", "www.affnet.example"] and slot["status"] == "active"
    assert f'data-affnet-slot="{slot["public_key"]}"' in slot["snippet"]
    assert f'src="{BASE_URL}/static/embed.js"' in slot["snippet"]
    assert (await api.get(f"/slots/{slot['id']}")).json() == slot
    second = (
        await api.post("/slots", {"name": "Footer", "format": "728x90", "domains": ["blog.affnet.example"]})
    ).json()
    items, pages = await all_pages(api, "/slots", limit=1)
    assert [s["id"] for s in items] == [second["id"], slot["id"]] and pages == 2

    refused = await api.post("/slots", {"name": "Bad", "format": "300x250", "domains": ["https://x.example/"]})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "domains"
    house = await api.post(
        "/slots", {"name": "House", "format": "native", "domains": ["a.example"], "fallback": "house"}
    )
    assert house.status_code == 422 and house.json()["error"]["field"] == "house_text"
    assert (await api.post("/slots", {"name": "X", "format": "999x1", "domains": ["a.example"]})).status_code == 400

    other = await publisher_api(new_client, settings, display_name="Other Blog")
    assert (await other.get(f"/slots/{slot['id']}")).status_code == 404
    assert (await other.get("/slots")).json()["items"] == []
    advertiser = await advertiser_api(new_client)
    assert (
        await advertiser.post("/slots", {"name": "A", "format": "300x250", "domains": ["a.example"]})
    ).status_code == 403


async def test_the_publisher_api_is_in_the_openapi_document_with_its_parameters(client):
    document = (await client.get("/schema/openapi.json")).json()
    paths = document["paths"]
    for path, method in (
        ("/api/v1/publisher/campaigns", "get"),
        ("/api/v1/publisher/campaigns/{campaign_id}", "get"),
        ("/api/v1/publisher/campaigns/{campaign_id}/join", "post"),
        ("/api/v1/publisher/links", "post"),
        ("/api/v1/publisher/links", "get"),
        ("/api/v1/publisher/links/{link_id}", "get"),
        ("/api/v1/publisher/clicks", "get"),
        ("/api/v1/publisher/conversions", "get"),
        ("/api/v1/publisher/slots", "get"),
        ("/api/v1/publisher/slots", "post"),
    ):
        operation = paths[path][method]
        assert operation["summary"], path
        assert "200" in operation["responses"] or "201" in operation["responses"], path
    clicks = {p["name"]: p for p in paths["/api/v1/publisher/clicks"]["get"]["parameters"]}
    assert set(clicks) >= {"since", "until", "campaign_id", "link_id", "reason", "sub1", "cursor", "limit"}
    ref = clicks["reason"]["schema"]["oneOf"][0]["$ref"].rsplit("/", 1)[1]
    assert {"valid", "duplicate", "bot", "datacenter"} <= set(document["components"]["schemas"][ref]["enum"])
