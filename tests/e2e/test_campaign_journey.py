"""An advertiser creates a campaign, a publisher joins it and copies a tracked link, the link
redirects a visitor to the landing page, and the click shows in the publisher's statistics: in
headless Chromium, against the real server, on each database engine."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import expect

from server.campaigns.tables import Campaign
from server.ledger import postings
from tests.e2e.pages import log_in
from tests.factories import make_advertiser, make_publisher

CHROME_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
LANDING_HOST = "shop.example.com"


@pytest.mark.browser
async def test_campaign_to_click_journey(live_server, new_page, browser, settings):
    base = live_server.url
    advertiser_id, advertiser_email = await make_advertiser()
    _, publisher_email = await make_publisher(settings, display_name="Trail Notes")

    # The advertiser creates a public campaign through the form.
    advertiser = await new_page()
    await log_in(advertiser, advertiser_email)
    await advertiser.goto("/advertiser/campaigns/new")
    await advertiser.fill("input[name=name]", "Alpine Boots")
    await advertiser.fill("input[name=currency]", "EUR")
    await advertiser.fill("textarea[name=allowed_domains]", LANDING_HOST)
    await advertiser.fill("input[name=landing_url]", f"https://{LANDING_HOST}/boots")
    await advertiser.fill("input[name=goal_0_name]", "sale")
    await advertiser.select_option("select[name=goal_0_model]", "cpa")
    await advertiser.fill("input[name=goal_0_advertiser]", "12.50")
    await advertiser.click("button:has-text('Create campaign')")
    await advertiser.wait_for_url(f"{base}/advertiser/campaigns/*")
    await expect(advertiser.locator("h1")).to_contain_text("Alpine Boots")
    campaign = await Campaign.select(Campaign.id, Campaign.status).where(Campaign.name == "Alpine Boots").first()
    assert campaign is not None and campaign["status"] == "active"
    # Publishers are offered a campaign only once its advertiser can pay them.
    await expect(advertiser.get_by_test_id("waits-for-funds")).to_be_visible()
    await postings.fund_advertiser(advertiser_id, 10_000, "EUR", reference_id=1, key="e2e-journey-funding")

    # The publisher finds it in the marketplace, joins, builds a link with a sub-id and copies it.
    publisher = await new_page()
    await publisher.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    await log_in(publisher, publisher_email)
    await publisher.goto("/publisher/campaigns")
    card = publisher.locator(f'[data-testid=campaign][data-campaign-id="{campaign["id"]}"]')
    await expect(card).to_contain_text("Alpine Boots")
    await expect(card).to_contain_text("Earn €10.00 per sale")  # 12.50 less the 20 % network margin
    await card.get_by_role("button", name="Join").click()
    await expect(card.get_by_test_id("membership-state")).to_contain_text("Joined")
    await publisher.goto(f"/publisher/campaigns/{campaign['id']}/link")
    await publisher.fill("input[name=sub1]", "spring-post")
    await publisher.click("button:has-text('Build link')")
    built = (await publisher.get_by_test_id("built-url").inner_text()).strip()
    assert built.startswith(f"{base}/c/") and "sub1=spring-post" in built
    await publisher.get_by_test_id("built").get_by_role("button", name="Copy").click()
    copied = await publisher.evaluate("navigator.clipboard.readText()")
    assert copied == built

    # A reader follows the link: the browser is redirected to the landing page with a click id.
    # (The shop does not exist on this offline machine: the browser's request for it is what
    # shows where the redirect led; the page itself then fails to load.)
    reader_context = await browser.new_context(user_agent=CHROME_UA)
    try:
        reader = await reader_context.new_page()
        requested: list[str] = []
        reader.on("request", lambda request: requested.append(request.url))
        with pytest.raises(PlaywrightError):
            await reader.goto(copied)
        assert requested[0] == copied
        landed = urlsplit(requested[1])
        assert (landed.scheme, landed.hostname, landed.path) == ("https", LANDING_HOST, "/boots")
        assert parse_qs(landed.query)["click_id"][0]
    finally:
        await reader_context.close()

    # Within seconds the publisher's statistics show the valid click under its sub-id.
    valid = publisher.get_by_test_id("valid-clicks")
    for _ in range(20):
        await publisher.goto(f"/publisher/campaigns/{campaign['id']}/stats")
        if (await valid.inner_text()).strip() == "1":
            break
        await asyncio.sleep(0.25)
    await expect(valid).to_have_text("1")
    await expect(publisher.locator("main")).to_contain_text("spring-post")
