"""The publisher API's marketplace, joining and links: what the pages do, with an API key."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from server.campaigns import creatives
from server.campaigns import service as campaigns
from tests.campaigns.test_publisher_marketplace import make_advertiser_user, make_campaign
from tests.conftest import BASE_URL
from tests.publisher_api.helpers import advertiser_api, all_pages, browser, publisher_api

WINTER = {
    "name": "Winter Coats",
    "description": "Warm coats",
    "visibility": "approval",
    "category": "travel",
    "hold_days": "0",
    "attribution_window_days": "7",
    "goal_0_name": "lead",
    "goal_0_model": "cpl",
    "goal_0_advertiser": "2.00",
    "goal_0_publisher": "1.20",
}


async def test_the_marketplace_shows_what_the_page_shows_with_terms_and_filters(new_client, settings):
    advertiser = await make_advertiser_user()
    public = await make_campaign(advertiser, name="Spring Boots")
    approval = await make_campaign(advertiser, **WINTER)
    private = await make_campaign(advertiser, name="Secret Sale", visibility="private")
    await make_campaign(advertiser, name="Broke Shop", funded=False, currency="USD")  # nobody can be paid
    creative = await creatives.add_text(advertiser, public, {"name": "Line", "text": "Boots off"})
    api = await publisher_api(new_client, settings)

    listing = await api.get("/campaigns")
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert [c["id"] for c in body["items"]] == [approval, public] and body["next_cursor"] is None
    boots = body["items"][1]
    assert boots["currency"] == "EUR" and boots["hold_days"] == 30 and boots["attribution_window_days"] == 30
    assert boots["goals"] == [
        {
            "name": "sale",
            "payout_model": "cpa",
            "publisher_payout_minor": 800,
            "publisher_share_bp": None,
            "terms": boots["goals"][0]["terms"],
        }
    ]
    assert "8.00" in boots["goals"][0]["terms"]
    assert "advertiser_amount" not in str(body) and "1000" not in str(boots["goals"])  # never the price
    assert boots["allowed_domains"] == ["shop.example.com", "blog.shop.example.com"]
    assert boots["creative_ids"] == [creative] and boots["membership_status"] is None and boots["can_join"]
    assert boots["advertiser"] == {"company_name": "Shop Ltd", "website": "https://shop.affnet.example"}

    assert [c["id"] for c in (await api.get("/campaigns", q="coats")).json()["items"]] == [approval]
    assert [c["id"] for c in (await api.get("/campaigns", category="travel")).json()["items"]] == [approval]
    assert [c["id"] for c in (await api.get("/campaigns", payout_model="cpa")).json()["items"]] == [public]
    assert (await api.get(f"/campaigns/{private}")).status_code == 404  # not invited: not there
    detail = await api.get(f"/campaigns/{approval}")
    assert detail.status_code == 200 and detail.json()["goals"][0]["publisher_payout_minor"] == 120

    # Invited: the private campaign shows; joined, the membership filter finds it.
    await campaigns.invite(advertiser, private, api.user.email)
    assert (await api.get("/campaigns", membership="invited")).json()["items"][0]["id"] == private
    joined = await api.post(f"/campaigns/{private}/join")
    assert joined.status_code == 200 and joined.json()["status"] == "approved"
    assert [c["id"] for c in (await api.get("/campaigns", membership="approved")).json()["items"]] == [private]
    assert {c["id"] for c in (await api.get("/campaigns", membership="none")).json()["items"]} == {public, approval}


async def test_bad_filter_values_are_refused_with_a_message(new_client, settings):
    api = await publisher_api(new_client, settings)
    for params in ({"payout_model": "cheap"}, {"category": "weapons"}, {"limit": "0"}, {"limit": "201"}):
        response = await api.get("/campaigns", **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["message"]
    bad_cursor = await api.get("/campaigns", cursor="not-ours")
    assert bad_cursor.status_code == 400 and bad_cursor.json()["error"]["field"] == "cursor"


async def test_the_marketplace_pages_every_campaign_once(new_client, settings):
    advertiser = await make_advertiser_user()
    made = [await make_campaign(advertiser, name=f"Campaign {i}") for i in range(5)]
    api = await publisher_api(new_client, settings)
    items, pages = await all_pages(api, "/campaigns", limit=2)
    assert [c["id"] for c in items] == sorted(made, reverse=True) and pages == 3


async def test_joining_and_applying_answer_the_membership_and_again_the_same(new_client, settings):
    advertiser = await make_advertiser_user()
    public = await make_campaign(advertiser)
    approval = await make_campaign(advertiser, **WINTER)
    api = await publisher_api(new_client, settings)

    first = await api.post(f"/campaigns/{public}/join")
    assert first.status_code == 200
    assert first.json() == {"campaign_id": public, "status": "approved", "link_id": first.json()["link_id"]}
    again = await api.post(f"/campaigns/{public}/join")
    assert again.status_code == 200 and again.json() == first.json()

    applied = await api.post(f"/campaigns/{approval}/join")
    assert applied.json() == {"campaign_id": approval, "status": "applied", "link_id": None}
    assert (await api.post(f"/campaigns/{approval}/join")).json()["status"] == "applied"
    assert (await api.post("/campaigns/999999/join")).status_code == 404


async def test_a_pending_publisher_cannot_join_and_is_told_why(new_client, settings):
    campaign_id = await make_campaign()
    api = await publisher_api(new_client, settings, approved=False)
    listing = await api.get("/campaigns")
    assert listing.status_code == 200 and listing.json()["items"][0]["can_join"] is False
    refused = await api.post(f"/campaigns/{campaign_id}/join")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "publisher_not_approved"
    assert "not approved yet" in refused.json()["error"]["message"]


async def test_a_link_made_by_api_redirects_with_its_sub_ids_and_deep_link(new_client, settings):
    campaign_id = await make_campaign()
    api = await publisher_api(new_client, settings)
    assert (await api.post("/links", {"campaign_id": campaign_id})).status_code == 404  # not joined yet
    await api.post(f"/campaigns/{campaign_id}/join")

    deep = "https://blog.shop.example.com/reviews?colour=red"
    made = await api.post("/links", {"campaign_id": campaign_id, "sub1": "spring sale", "sub2": "a&b", "url": deep})
    assert made.status_code == 201, made.text
    link = made.json()
    code = link["code"]
    assert link["url"] == f"{BASE_URL}/c/{code}"
    assert link["tracked_url"] == (
        f"{BASE_URL}/c/{code}?sub1=spring%20sale&sub2=a%26b&url=https%3A%2F%2Fblog.shop.example.com%2Freviews%3Fcolour%3Dred"
    )
    assert link["campaign_id"] == campaign_id and link["membership_status"] == "approved"

    visitor = new_client()
    plain = await visitor.get(f"/c/{code}", headers={"user-agent": browser()}, follow_redirects=False)
    assert plain.status_code == 302
    assert plain.headers["location"].startswith("https://shop.example.com/boots?")
    clicked = await visitor.get(
        link["tracked_url"].removeprefix(BASE_URL), headers={"user-agent": browser()}, follow_redirects=False
    )
    assert clicked.status_code == 302
    landing = urlsplit(clicked.headers["location"])
    assert (landing.hostname, landing.path) == ("blog.shop.example.com", "/reviews")
    assert parse_qs(landing.query)["colour"] == ["red"]

    # The same link, listed and by id.
    assert (await api.get(f"/links/{link['id']}")).json() == {**link, "tracked_url": link["url"]}
    listed = (await api.get("/links", campaign_id=campaign_id)).json()
    assert [item["id"] for item in listed["items"]] == [link["id"]] and listed["next_cursor"] is None
    assert (await api.get("/links", campaign_id=campaign_id + 1)).json()["items"] == []


async def test_an_off_domain_deep_link_or_long_sub_id_is_refused_naming_the_field(new_client, settings):
    campaign_id = await make_campaign()
    api = await publisher_api(new_client, settings)
    await api.post(f"/campaigns/{campaign_id}/join")
    refused = await api.post("/links", {"campaign_id": campaign_id, "url": "https://evil.example.net/shop"})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["field"] == "url" and "allowed domains (shop.example.com, blog.shop.example.com)" in error["message"]
    too_long = await api.post("/links", {"campaign_id": campaign_id, "sub3": "x" * 101})
    assert too_long.status_code == 400 and "sub3" in too_long.json()["error"]["message"]
    control = await api.post("/links", {"campaign_id": campaign_id, "sub4": "a\x07b"})
    assert control.status_code == 422 and control.json()["error"]["field"] == "sub4"


async def test_another_publishers_link_is_404_and_an_advertiser_key_403(new_client, settings):
    campaign_id = await make_campaign()
    owner = await publisher_api(new_client, settings)
    await owner.post(f"/campaigns/{campaign_id}/join")
    link_id = (await owner.get("/links")).json()["items"][0]["id"]
    stranger = await publisher_api(new_client, settings, display_name="Other Blog")
    missing = await stranger.get(f"/links/{link_id}")
    assert missing.status_code == 404 and missing.json()["error"]["message"]
    assert (await stranger.get("/links")).json()["items"] == []

    advertiser = await advertiser_api(new_client)
    for path in ("/campaigns", "/links", f"/links/{link_id}", "/clicks", "/conversions", "/slots"):
        refused = await advertiser.get(path)
        assert refused.status_code == 403, path
        assert set(refused.json()) == {"error"} and {"code", "message"} <= set(refused.json()["error"])
        assert "publisher" in refused.json()["error"]["message"]
    assert (await advertiser.post(f"/campaigns/{campaign_id}/join")).status_code == 403
