"""`make run` seeds a banner campaign and a slot for the demo publisher; /demo/blog shows the slot; the
demo advertiser has funds, so new publishers find the demo campaigns in the marketplace."""

from __future__ import annotations

import html
import re

from dev.demo import DEMO_ADVERTISER, DEMO_FUNDS_MINOR, seed_demo
from server.accounts.tables import User
from server.ads.tables import AdSlot
from server.campaigns.tables import Campaign, Creative
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from tests.ads.factories import BROWSER, path_of, view
from tests.campaigns.test_publisher_marketplace import listed_ids, publisher_client
from tests.conftest import BASE_URL


async def test_the_demo_blog_shows_a_working_slot(app, client, settings):
    await seed_demo(settings)
    await seed_demo(settings)  # a second run adds nothing
    assert await AdSlot.count() == 1
    assert await Campaign.count().where(Campaign.name == "Demo Shop knives (banners)") == 1
    assert await Creative.count().where(Creative.iab_size == "300x250") == 1

    page = await client.get("/demo/blog")
    assert page.status_code == 200
    key = (await AdSlot.select(AdSlot.public_key).first())["public_key"]
    assert f'data-affnet-slot="{key}"' in page.text
    assert f'<script async src="{BASE_URL}/static/embed.js"></script>' in page.text
    assert (await client.get("/static/embed.js")).status_code == 200

    # The page's own requests (same origin: a Referer, no Origin) get the demo banner.
    answer = (
        await client.get(
            "/ads/decide", params={"slot": key}, headers={"referer": f"{BASE_URL}/demo/blog", "user-agent": BROWSER}
        )
    ).json()
    assert answer["status"] == "ad" and answer["width"] == 300
    frame = await client.get(path_of(answer["frame_url"]))
    image = html.unescape(re.search(r'<img src="([^"]+)"', frame.text).group(1))
    assert (await client.get(path_of(image))).headers["content-type"] == "image/png"
    assert (await view(client, answer["view_url"])).status_code == 202


async def test_a_new_publisher_finds_the_demo_campaigns_in_the_marketplace(app, new_client, settings):
    await seed_demo(settings)
    await seed_demo(settings)  # a second `make run` does not fund the demo advertiser again
    advertiser = await User.select(User.id).where(User.email == DEMO_ADVERTISER).first()
    assert await ledger.balance(K.advertiser_balance, "EUR", advertiser["id"]) == DEMO_FUNDS_MINOR

    browser, _ = await publisher_client(new_client, settings)
    page = (await browser.get("/publisher/campaigns")).text
    demo = await Campaign.select(Campaign.id).where(Campaign.advertiser == advertiser["id"])
    assert len(demo) == 2
    assert sorted(listed_ids(page)) == sorted(c["id"] for c in demo)
    assert "Demo Shop spring sale" in page and "Demo Shop knives (banners)" in page
