"""GET /c/{code}: where clicks go, how they are classified, and that every one is stored."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from server.campaigns import service as campaigns
from server.tracking.tables import Click
from server.tracking.tokens import read_click_id
from tests.tracking.factories import another_reader, campaign_with_link

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


async def click(client, code: str, query: str = "", *, ua: str = BROWSER, method: str = "GET", headers=None):
    return await client.request(
        method,
        f"/c/{code}{'?' + query if query else ''}",
        headers={"user-agent": ua, **(headers or {})},
        follow_redirects=False,
    )


async def stored_clicks(app) -> list[dict]:
    await app.state.click_buffer.flush()
    return await Click.select().order_by(Click.id)


async def test_a_click_redirects_to_the_landing_page_with_a_signed_click_id(app, client, settings):
    s = await campaign_with_link(settings)
    response = await click(client, s.code)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.hostname, location.path) == ("https", "shop.example.com", "/boots")
    click_id = parse_qs(location.query)["click_id"][0]
    key = app.state.redirector.token_key
    ref = read_click_id(key, click_id)
    assert ref is not None and ref.link_id == s.link_id
    assert response.headers["cache-control"].startswith("no-store")

    [row] = await stored_clicks(app)
    assert row["click_id"] == click_id and row["reason"] == "valid"
    assert (row["campaign"], row["publisher"], row["link"]) == (s.campaign_id, s.publisher.id, s.link_id)
    assert row["ua_family"] == "Chrome"


async def test_sub_ids_are_recorded_and_forwarded_only_when_the_advertiser_asks(app, client, settings):
    s = await campaign_with_link(settings, forward_sub2="on", click_id_param="aff_click")
    response = await click(client, s.code, "sub1=spring&sub2=sidebar&sub5=" + "x" * 300)
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert "aff_click" in query and "click_id" not in query
    assert query["sub2"] == ["sidebar"] and "sub1" not in query
    [row] = await stored_clicks(app)
    assert (row["sub1"], row["sub2"], row["sub5"]) == ("spring", "sidebar", "x" * 100)


HOSTILE_DEEP_LINKS = [
    "//evil.com",
    "\\\\evil.com",
    "https://shop.example.com@evil.com/",
    "javascript:alert(1)",
    "https://shop.example.com/%0d%0aSet-Cookie:%20x=1",
    "https://SHOP.EXAMPLE.COM.evil.com/",
    "https://shop.exаmple.com/",
    "https://shop.example.com:8443/",
    "http://evil.com#@shop.example.com",
    "https:/\\evil.com",
    "data:text/html,<script>",
    "https://evilshop.example.com/",
]


@pytest.mark.parametrize("deep", HOSTILE_DEEP_LINKS)
async def test_no_deep_link_can_send_a_visitor_off_the_allowed_domains(app, client, settings, deep):
    s = await campaign_with_link(settings)
    response = await click(client, s.code, f"url={deep}")
    assert response.status_code == 302
    location = response.headers["location"]
    parts = urlsplit(location)
    assert parts.scheme == "https" and parts.hostname == "shop.example.com" and parts.port is None, location
    assert parts.username is None and "\r" not in location and "\n" not in location


async def test_an_allowed_deep_link_is_followed_with_mixed_case_host(app, client, settings):
    s = await campaign_with_link(settings)
    response = await click(client, s.code, "url=https://Blog.Shop.Example.com/review%3Fid%3D7")
    parts = urlsplit(response.headers["location"])
    assert parts.hostname == "blog.shop.example.com" and parts.path == "/review"
    assert parse_qs(parts.query)["id"] == ["7"] and "click_id" in parse_qs(parts.query)


async def test_unknown_code_answers_404_not_a_redirect(app, client):
    response = await click(client, "nosuchcode")
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "does not exist" in response.text
    assert await stored_clicks(app) == []


async def test_the_same_visitor_twice_within_the_window_is_a_duplicate(app, client, new_client, settings):
    s = await campaign_with_link(settings)
    first, second = await click(client, s.code), await click(client, s.code)
    assert first.status_code == second.status_code == 302
    assert "click_id=" in second.headers["location"]  # duplicates still attribute
    other_visitor = new_client()
    other_visitor._transport.client = ("198.51.100.9", 1234)  # another network
    await click(other_visitor, s.code)
    rows = await stored_clicks(app)
    assert [r["reason"] for r in rows] == ["valid", "duplicate", "valid"]


@pytest.mark.parametrize(
    "ua",
    [
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "curl/8.5.0",
        "",
    ],
)
async def test_bots_and_link_previews_redirect_but_are_never_valid(app, client, settings, ua):
    s = await campaign_with_link(settings)
    response = await click(client, s.code, ua=ua)
    assert response.status_code == 302 and "shop.example.com" in response.headers["location"]
    [row] = await stored_clicks(app)
    assert row["reason"] == "bot"


async def test_a_head_request_is_recorded_as_invalid(app, client, settings):
    s = await campaign_with_link(settings)
    response = await click(client, s.code, method="HEAD")
    assert response.status_code == 302
    [row] = await stored_clicks(app)
    assert row["reason"] == "head_request"


async def test_a_paused_campaign_sends_traffic_to_its_fallback_at_once(app, client, settings):
    s = await campaign_with_link(settings)
    assert (await click(client, s.code)).headers["location"].startswith("https://shop.example.com/")  # cached
    await campaigns.change_status(s.advertiser, s.campaign_id, "pause")
    response = await click(client, s.code)
    assert response.headers["location"] == "https://fallback.example.org/"
    await campaigns.change_status(s.advertiser, s.campaign_id, "resume")
    assert (await click(client, s.code)).headers["location"].startswith("https://shop.example.com/")
    rows = await stored_clicks(app)
    assert [r["reason"] for r in rows] == ["valid", "campaign_paused", "duplicate"]


async def test_a_removed_member_link_goes_to_the_fallback(app, client, settings):
    s = await campaign_with_link(settings)
    [membership] = await campaigns.applicants(s.advertiser, s.campaign_id)
    await campaigns.decide(s.advertiser, membership.id, accept=False)
    response = await click(client, s.code)
    assert response.headers["location"] == "https://fallback.example.org/"
    [row] = await stored_clicks(app)
    assert row["reason"] == "not_member"


async def test_daily_click_cap_turns_further_clicks_away(app, new_client, settings):
    s = await campaign_with_link(settings, cap_clicks_daily=2)
    locations = []
    for i in range(4):
        visitor = new_client()
        visitor._transport.client = (f"198.51.{100 + i}.1", 1000)  # not 198.51.0.0/24: Azure's, a data centre
        locations.append((await click(visitor, s.code)).headers["location"])
        if i == 2:
            await app.state.click_buffer.flush()  # the flush counts the batch and learns the cap is reached
    # The third click was answered before any flush had counted the first two: it went to the
    # landing page (one flush interval stale), but it is not counted. After the flush, visitors
    # go to the fallback URL.
    assert [urlsplit(loc).hostname for loc in locations[:3]] == ["shop.example.com"] * 3
    assert locations[3] == "https://fallback.example.org/"
    rows = await stored_clicks(app)
    assert [r["reason"] for r in rows] == ["valid", "valid", "over_cap", "over_cap"]


async def test_cpc_budget_is_never_exceeded_by_valid_clicks(app, new_client, settings):
    # 0.40 per click, 1.00 a day: two valid clicks fit, the third would overspend.
    s = await campaign_with_link(
        settings, goal_0_name="click", goal_0_model="cpc", goal_0_advertiser="0.40", daily_budget="1.00"
    )
    for i in range(4):
        visitor = new_client()
        visitor._transport.client = (f"203.0.{i}.9", 1000)
        await click(visitor, s.code)
    rows = await stored_clicks(app)
    assert [r["reason"] for r in rows] == ["valid", "valid", "over_budget", "over_budget"]


async def test_raw_ip_addresses_are_never_stored(app, client, settings):
    s = await campaign_with_link(settings)
    await click(client, s.code, headers={"referer": "https://myblog.example.net/post?x=1"})
    [row] = await stored_clicks(app)
    assert "203.0.113" not in str(row)
    assert row["referrer_host"] == "myblog.example.net"
    assert len(row["visitor_hash"]) == 32


async def test_every_buffered_click_is_stored_when_the_server_shuts_down(settings):
    """A second app instance: clicks buffered, then a graceful shutdown writes them all."""
    import httpx

    from server import piccolo_app
    from server.app import create_app
    from server.core import db

    s = await campaign_with_link(settings)
    before = await Click.count()
    engine = db.engine()  # the first app's engine: startup of the second rebinds the tables
    second = create_app(settings)
    for hook in second.on_startup:
        await hook(second)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://t") as c:
            for i in range(250):
                await c.get(f"/c/{s.code}?sub1=n{i}", headers={"user-agent": BROWSER})
        assert second.state.click_buffer.pending + second.state.click_buffer.written == 250
    finally:
        for hook in second.on_shutdown:
            await hook(second)
        piccolo_app.bind(engine)  # back to the first app's engine, whose pool is still open
    assert await Click.count() - before == 250


async def test_a_click_flood_from_one_network_stops_counting_but_still_redirects(app, client, settings):
    from server.tracking.counting import NETWORK_CLICKS_PER_MINUTE

    s = await campaign_with_link(settings)
    for i in range(NETWORK_CLICKS_PER_MINUTE + 5):
        # Another browser each time, so these are not duplicates: only the rate gives them away.
        another_reader(client)
        response = await click(client, s.code, ua=f"{BROWSER} build/{i}")
        assert response.status_code == 302 and "shop.example.com" in response.headers["location"]
    rows = await stored_clicks(app)
    reasons = [r["reason"] for r in rows]
    assert reasons[:NETWORK_CLICKS_PER_MINUTE] == ["valid"] * NETWORK_CLICKS_PER_MINUTE
    assert reasons[NETWORK_CLICKS_PER_MINUTE:] == ["rate_limited"] * 5


async def test_a_dead_link_is_explained_in_the_readers_language(client):
    french = await client.get("/c/nope", headers={"Accept-Language": "fr-FR,fr;q=0.9"}, follow_redirects=False)
    assert french.status_code == 404
    assert '<html lang="fr">' in french.text and "Ce lien n’existe pas" in french.text
    italian = await client.get("/c/nope", headers={"Accept-Language": "it"}, follow_redirects=False)
    assert '<html lang="it">' in italian.text and "Questo link non esiste" in italian.text
    english = await client.get("/c/nope", follow_redirects=False)
    assert '<html lang="en">' in english.text and "This link does not exist" in english.text
