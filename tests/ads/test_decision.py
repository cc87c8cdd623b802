"""The ad decision: only creatives of the slot's exact size, only from campaigns the publisher may
run that can take traffic, weighted by what they pay, on the slot's own sites, from memory."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime

from server.accounts.tables import Role
from server.ads.decision import can_serve
from server.ads.inventory import CampaignEntry, PublisherEntry
from server.ads.service import write_impressions
from server.ads.tables import AdSlot
from server.campaigns import service as campaigns
from server.campaigns.tables import Membership
from tests.ads.factories import BROWSER, ad_campaign, as_user, decide, join, publisher, slot
from tests.conftest import BASE_URL


async def decisions(app, key: str, n: int, *, origin: str = "https://blog.example.org") -> list[dict]:
    """n decisions for the slot, each from another network (so no rate limit or cap applies)."""
    decider = app.state.ads.decider
    answers = []
    for i in range(n):
        answer = await decider.decide(
            key, origin=origin, referer=None, ip=f"10.{i // 250}.{i % 250}.7", user_agent=BROWSER
        )
        assert answer.status == 200, answer.body
        answers.append(answer.body)
    return answers


async def test_only_creatives_of_the_slots_exact_size_are_ever_chosen(app, settings):
    big = await ad_campaign(settings, sizes=((300, 250), (728, 90), (320, 50), (300, 600)), text="Knives on sale")
    wide = await ad_campaign(settings, sizes=((728, 90), (160, 600 - 1)))  # 160x599 is no IAB size
    pub = await publisher(settings)
    await join(pub, big)
    await join(pub, wide)
    rectangle, leaderboard, native, skyscraper = [
        await slot(pub, format=f) for f in ("300x250", "728x90", "native", "160x600")
    ]

    chosen = Counter(a["creative"]["id"] for a in await decisions(app, rectangle["public_key"], 60))
    assert set(chosen) == {big.creatives["300x250"]}
    chosen = Counter(a["creative"]["id"] for a in await decisions(app, leaderboard["public_key"], 60))
    assert set(chosen) <= {big.creatives["728x90"], wide.creatives["728x90"]} and len(chosen) == 2
    chosen = Counter(a["creative"]["id"] for a in await decisions(app, native["public_key"], 20))
    assert set(chosen) == {big.creatives["native"]}
    [empty] = await decisions(app, skyscraper["public_key"], 1)
    assert (empty["status"], empty["reason"]) == ("fallback", "no_ad")


async def test_an_answer_carries_the_creative_and_signed_single_use_urls(app, client, settings):
    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    link_id, code = await join(pub, camp)
    s = await slot(pub)
    response = await decide(client, s["public_key"])
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*" and response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["status"], body["format"], body["width"], body["height"]) == ("ad", "300x250", 300, 250)
    assert body["creative"]["id"] == camp.creatives["300x250"]
    token = body["view_url"].rsplit("/", 1)[1]
    assert body["frame_url"] == f"{BASE_URL}/ads/f/{token}"
    assert body["click_url"] == f"{BASE_URL}/c/{code}?o={token}"
    again = (await decide(client, s["public_key"])).json()
    assert again["offer"] != body["offer"] and again["view_url"] != body["view_url"]


async def test_paused_and_ended_campaigns_are_never_served(app, client, settings):
    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, camp)
    key = (await slot(pub))["public_key"]
    assert (await decide(client, key)).json()["status"] == "ad"
    await campaigns.change_status(camp.advertiser, camp.campaign_id, "pause")
    # At once: the change drops the cached campaign in every process.
    assert {a["status"] for a in await decisions(app, key, 30)} == {"fallback"}
    await campaigns.change_status(camp.advertiser, camp.campaign_id, "resume")
    assert (await decide(client, key)).json()["status"] == "ad"
    await campaigns.change_status(camp.advertiser, camp.campaign_id, "end")
    assert {a["status"] for a in await decisions(app, key, 30)} == {"fallback"}


async def test_a_campaign_whose_budget_is_spent_is_never_served(app, settings):
    # 2.00 per thousand: 500 valid impressions spend the whole 1.00 total budget.
    camp = await ad_campaign(settings, cpm="2.00", cpm_publisher="1.50", total_budget="1.00")
    pub = await publisher(settings)
    link_id, _ = await join(pub, camp)
    s = await slot(pub)
    now = datetime.now(UTC)
    rows = [
        (f"spent{i:011d}", now, s["id"], camp.creatives["300x250"], camp.campaign_id, pub.id, "v", "valid", "")
        for i in range(499)
    ]
    await write_impressions(rows)
    assert {a["status"] for a in await decisions(app, s["public_key"], 5)} == {"ad"}
    app.state.ads.inventory.clear()  # what another server process would load now
    await write_impressions(
        [("spent-last0001", now, s["id"], camp.creatives["300x250"], camp.campaign_id, pub.id, "v", "valid", "")]
    )
    answers = await decisions(app, s["public_key"], 30)
    assert {(a["status"], a["reason"]) for a in answers} == {("fallback", "no_ad")}


async def test_impressions_counted_here_spend_the_daily_budget_at_once(app, client, settings):
    # 10.00 per thousand is one cent per impression; a daily budget of one cent takes one.
    camp = await ad_campaign(settings, cpm="10.00", cpm_publisher="8.00", daily_budget="0.01")
    pub = await publisher(settings)
    await join(pub, camp)
    key = (await slot(pub))["public_key"]
    first = (await decide(client, key)).json()
    assert first["status"] == "ad"
    assert (
        await client.post(first["view_url"].removeprefix(BASE_URL), headers={"user-agent": BROWSER})
    ).status_code == 202
    assert {a["status"] for a in await decisions(app, key, 20)} == {"fallback"}


async def test_a_cpc_campaign_that_cannot_pay_one_more_click_or_is_over_its_click_cap_is_not_served(app, settings):
    pub = await publisher(settings)
    poor = await ad_campaign(
        settings, daily_budget="0.40", goal_1_name="click", goal_1_model="cpc", goal_1_advertiser="0.50"
    )
    capped = await ad_campaign(settings, cap_clicks_daily="1")
    await join(pub, poor)
    _, code = await join(pub, capped)
    key = (await slot(pub))["public_key"]
    answers = await decisions(app, key, 30)
    assert {a["creative"]["id"] for a in answers} == {capped.creatives["300x250"]}
    # One valid click reaches the capped campaign's cap of one a day.
    response = await app.state.ads.decider.inventory.publishers.get(pub.id)
    assert response is not None
    from tests.earnings.factories import clicks as store_clicks
    from tests.tracking.factories import Setup

    link = response.links[capped.campaign_id]
    await store_clicks(Setup(capped.advertiser, pub, pub.email, capped.campaign_id, code, link[0]), [datetime.now(UTC)])
    app.state.ads.inventory.clear()
    assert {a["status"] for a in await decisions(app, key, 20)} == {"fallback"}


def _entry(**terms) -> CampaignEntry:
    base = CampaignEntry(
        campaign_id=1,
        advertiser_id=1,
        status="active",
        currency="EUR",
        advertiser_host="",
        creatives={},
        weight=1,
        cpm_price=2000,
        cpc_price=0,
        daily_budget_minor=None,
        total_budget_minor=None,
        cap_clicks_daily=None,
        cap_publisher_clicks_daily=None,
        day=date(2026, 3, 10),
        spent_today_minor=0,
        spent_total_minor=0,
        clicks_today=0,
    )
    return replace(base, **terms)


def test_a_daily_budget_is_paced_through_the_day_an_hour_ahead_at_most():
    today, publisher_entry = date(2026, 3, 10), PublisherEntry(1, {}, {}, date(2026, 3, 10))
    five = 5 * 3600
    # 24.00 a day: by 05:00 up to 6.00 (an hour ahead of an even spread) may be spent.
    assert can_serve(_entry(daily_budget_minor=2400, spent_today_minor=599), publisher_entry, today, five)
    assert not can_serve(_entry(daily_budget_minor=2400, spent_today_minor=600), publisher_entry, today, five)
    assert can_serve(_entry(daily_budget_minor=2400, spent_today_minor=600), publisher_entry, today, five + 3600)
    assert not can_serve(_entry(daily_budget_minor=2400, spent_today_minor=2400), publisher_entry, today, 86_399)
    # Yesterday's load says nothing about today: nothing spent yet.
    assert can_serve(
        _entry(daily_budget_minor=2400, spent_today_minor=2400, day=date(2026, 3, 9)), publisher_entry, today, five
    )
    # Impressions counted in this process since the load count too (in thousandths of a cent).
    assert not can_serve(
        _entry(daily_budget_minor=2400, spent_today_minor=599, extra_milli=1000), publisher_entry, today, five
    )
    assert not can_serve(_entry(status="paused"), publisher_entry, today, five)
    assert not can_serve(_entry(cap_publisher_clicks_daily=3), PublisherEntry(1, {}, {1: 3}, today), today, five)


async def test_campaigns_are_chosen_in_proportion_to_what_they_pay_per_thousand(app, settings):
    rich = await ad_campaign(settings, cpm="10.00", cpm_publisher="9.00")
    modest = await ad_campaign(settings, cpm="2.00", cpm_publisher="1.00")
    pub = await publisher(settings)
    await join(pub, rich)
    await join(pub, modest)
    key = (await slot(pub))["public_key"]
    app.state.ads.decider.rng = random.Random(2026)
    chosen = Counter(a["creative"]["id"] for a in await decisions(app, key, 1000))
    share = chosen[rich.creatives["300x250"]] / 1000
    assert 0.86 <= share <= 0.94, chosen  # 900 / (900 + 100)


async def test_only_campaigns_the_publisher_is_approved_in_are_served(app, settings):
    joined = await ad_campaign(settings)
    await ad_campaign(settings)  # nobody joined this one
    pub = await publisher(settings)
    await join(pub, joined)
    key = (await slot(pub))["public_key"]
    assert {a["creative"]["id"] for a in await decisions(app, key, 20)} == {joined.creatives["300x250"]}
    membership = await Membership.select(Membership.id).where(Membership.campaign == joined.campaign_id).first()
    await campaigns.decide(joined.advertiser, membership["id"], accept=False, note="not a fit")
    assert {a["status"] for a in await decisions(app, key, 20)} == {"fallback"}


async def test_a_slot_answers_only_on_its_own_sites(app, client, settings):
    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, camp)
    key = (await slot(pub, domains="blog.example.org"))["public_key"]
    for origin in (
        "https://blog.example.org",
        "https://www.blog.example.org",
        "http://blog.example.org:8080",
        BASE_URL,
    ):  # affnet's own pages (the demo, previews) may show any slot
        assert (await decide(client, key, origin=origin)).json()["status"] == "ad", origin
    for origin in ("https://evilblog.example.org", "https://blog.example.org.evil.net", "https://example.org"):
        response = await decide(client, key, origin=origin)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "site_not_allowed"), origin
    # Without Origin (a same-site request), the Referer names the page.
    response = await decide(client, key, origin=None, headers={"referer": "https://blog.example.org/post"})
    assert response.json()["status"] == "ad"
    response = await decide(client, key, origin=None)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "unknown_site")
    response = await decide(client, "no-such-slot-key")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_slot")


async def test_what_a_slot_shows_when_no_ad_fits(app, client, settings):
    pub = await publisher(settings)
    collapse = await slot(pub)
    house = await slot(
        pub, fallback="house", house_text="Recipes <b>weekly</b>", house_url="https://blog.example.org/newsletter"
    )
    own = await slot(pub, fallback="html", fallback_html='<p>My <a href="https://shop.example/">shop</a></p>')
    body = (await decide(client, collapse["public_key"])).json()
    assert (body["status"], body["fallback"], body["reason"]) == ("fallback", "collapse", "no_ad")
    body = (await decide(client, house["public_key"])).json()
    assert body["fallback"] == "house" and "Recipes &lt;b&gt;weekly&lt;/b&gt;" in body["html"]
    assert 'href="https://blog.example.org/newsletter"' in body["html"] and "<b>" not in body["html"]
    body = (await decide(client, own["public_key"])).json()
    assert body["fallback"] == "html" and body["html"] == own["fallback_html"]
    assert (body["width"], body["height"]) == (300, 250)


async def test_a_paused_slot_and_bots_get_no_ad(app, client, settings):
    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, camp)
    s = await slot(pub)
    bot = await decide(client, s["public_key"], ua="Mozilla/5.0 (compatible; Googlebot/2.1)")
    assert (bot.json()["status"], bot.json()["reason"]) == ("fallback", "no_ad")
    from server.ads import service

    await service.set_status(pub, s["id"], "pause")
    body = (await decide(client, s["public_key"])).json()
    assert (body["status"], body["reason"]) == ("fallback", "slot_paused")


async def test_decisions_answer_from_memory(app, client, settings):
    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, camp)
    s = await slot(pub)
    assert (await decide(client, s["public_key"])).json()["status"] == "ad"
    # Gone from the database behind the service's back: answers keep coming from memory (until the
    # entries' TTL, or a change announced through the service).
    await AdSlot.delete().where(AdSlot.id == s["id"])
    for _ in range(20):
        assert (await decide(client, s["public_key"])).json()["status"] == "ad"
    app.state.ads.inventory.clear()
    assert (await decide(client, s["public_key"])).status_code == 404


async def test_too_many_decisions_from_one_network_get_the_fallback(app, client, settings):
    from server.ads.counting import NetworkWindows

    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, camp)
    key = (await slot(pub))["public_key"]
    app.state.ads.decider.network_rate = NetworkWindows(3, shared=True)
    answers = [(await decide(client, key)).json() for _ in range(5)]
    assert [a["status"] for a in answers] == ["ad", "ad", "ad", "fallback", "fallback"]
    assert answers[-1]["reason"] == "rate_limited"


async def test_an_unapproved_publishers_slot_shows_only_its_fallback(app, client, settings):
    from tests.factories import make_publisher

    user_id, email = await make_publisher(settings, approved=False)
    s = await slot(as_user(user_id, email, Role.publisher))
    body = (await decide(client, s["public_key"])).json()
    assert (body["status"], body["reason"]) == ("fallback", "slot_paused")
