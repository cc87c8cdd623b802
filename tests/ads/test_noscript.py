"""Readers without JavaScript: the slot's <noscript> image (/ads/n/KEY/img) is an ad decided as the
embed script's, its view counted when the image is fetched (the no-script rule), and the link
around it (/ads/n/KEY/go) sends the same reader through that ad's signed click."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

from PIL import Image
from redis.asyncio import Redis

from server.ads.noscript import NoScript
from tests.ads.factories import BROWSER, ad_campaign, join, path_of, publisher, slot, stored_impressions
from tests.ads.test_ad_clicks import stored_reasons
from tests.conftest import BASE_URL

PAGE = "http://127.0.0.1:8080/?p=12"  # a WordPress post on the blogger's own machine


async def noscript_slot(settings, **slot_terms):
    camp = await ad_campaign(settings, text="Knives on sale")
    pub = await publisher(settings)
    _, code = await join(pub, camp)
    s = await slot(pub, domains="127.0.0.1\nblog.example.org", **slot_terms)
    return camp, s, code


async def fetch(client, path: str, *, referer: str | None = PAGE, ua: str = BROWSER, **headers: str):
    sent = {"user-agent": ua, **({"referer": referer} if referer else {}), **headers}
    return await client.get(path, headers=sent, follow_redirects=False)


def assert_blank_gif(response) -> None:
    assert (response.status_code, response.headers["content-type"]) == (200, "image/gif")
    assert response.headers["cache-control"] == "no-store" and "location" not in response.headers
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (1, 1) and image.info.get("transparency") == 0


async def test_the_image_counts_one_view_and_is_the_creatives_image(app, client, settings):
    camp, s, _ = await noscript_slot(settings)
    response = await fetch(client, f"/ads/n/{s['public_key']}/img")
    assert response.status_code == 302 and response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    assert location.startswith(f"{BASE_URL}/media/")  # affnet's own copy of the creative, as in the frame
    image = await client.get(path_of(location))
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (300, 250)
    [row] = await stored_impressions(app)
    assert (row["slot"], row["creative"], row["campaign"], row["reason"]) == (
        s["id"],
        camp.creatives["300x250"],
        camp.campaign_id,
        "valid",
    )
    # Each image is a decision of its own, bounded by the decision's and the views' own rules.
    assert (await fetch(client, f"/ads/n/{s['public_key']}/img")).status_code == 302
    assert len({r["offer"] for r in await stored_impressions(app)}) == 2


async def test_the_link_after_the_image_is_the_ads_signed_click_and_the_click_is_valid(app, client, settings):
    _, s, code = await noscript_slot(settings)
    await fetch(client, f"/ads/n/{s['public_key']}/img")
    go = await fetch(client, f"/ads/n/{s['public_key']}/go", referer=PAGE)
    assert go.status_code == 302 and go.headers["cache-control"] == "no-store"
    location = go.headers["location"]
    assert location.startswith(f"{BASE_URL}/c/{code}?o=")
    click = await fetch(client, path_of(location))
    landing = urlsplit(click.headers["location"])
    assert (click.status_code, landing.hostname) == (302, "shop.example.com") and "click_id=" in landing.query
    assert await stored_reasons(app) == ["valid"]


async def test_every_process_finds_the_readers_ad_in_redis(app, client, settings):
    _, s, code = await noscript_slot(settings)
    await fetch(client, f"/ads/n/{s['public_key']}/img")
    ads = app.state.ads
    redis = Redis.from_url(settings.redis_url)
    try:
        # Another process: nothing in memory, the same Redis.
        other = NoScript(ads.decider, ads.views, redis, ads.decider.visitor_key)
        url = await other.click_url(s["public_key"], ip="203.0.113.7", user_agent=BROWSER)
        assert url is not None and url.startswith(f"{BASE_URL}/c/{code}?o=")
        assert await other.click_url(s["public_key"], ip="203.0.113.8", user_agent=BROWSER) is None
    finally:
        await redis.aclose()


async def test_the_link_with_no_ad_remembered_is_a_404_page_and_goes_nowhere(app, client, settings):
    _, s, _ = await noscript_slot(settings)
    response = await fetch(client, f"/ads/n/{s['public_key']}/go")
    assert response.status_code == 404 and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "This ad has expired" in response.text
    french = await fetch(client, f"/ads/n/{s['public_key']}/go", **{"accept-language": "fr-FR,fr;q=0.9"})
    assert french.status_code == 404 and "Cette publicité a expiré" in french.text
    # Another reader's ad is not theirs to click.
    await fetch(client, f"/ads/n/{s['public_key']}/img", ua=BROWSER + " Edg/126.0")
    assert (await fetch(client, f"/ads/n/{s['public_key']}/go")).status_code == 404
    assert (await fetch(client, "/ads/n/no-such-key/go")).status_code == 404


async def test_no_image_ad_is_a_blank_pixel_and_counts_nothing(app, client, settings):
    _, s, _ = await noscript_slot(settings)
    _, native, _ = await noscript_slot(settings, format="native")
    assert_blank_gif(await fetch(client, "/ads/n/no-such-key/img"))
    assert_blank_gif(await fetch(client, f"/ads/n/{s['public_key']}/img", referer="https://elsewhere.example.net/"))
    assert_blank_gif(await fetch(client, f"/ads/n/{s['public_key']}/img", referer=None))
    assert_blank_gif(await fetch(client, f"/ads/n/{native['public_key']}/img"))  # a text ad is no image
    assert_blank_gif(await fetch(client, f"/ads/n/{s['public_key']}/img", ua="Googlebot/2.1"))
    assert await stored_impressions(app) == []
    assert (await client.post(f"/ads/n/{s['public_key']}/img")).status_code == 405
