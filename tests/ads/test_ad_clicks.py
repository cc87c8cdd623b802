"""Clicks on ads go through /c/{code} carrying their offer: valid only after the offer's view was
counted, once, before the offer expires, on the link it was made for. The ad's frame shows the
creative, escaped, and links to exactly that click URL."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from server.ads import offers
from server.tracking.tables import Click
from tests.ads.factories import BROWSER, ad_campaign, decide, join, path_of, publisher, served_ad, slot, view
from tests.factories import login
from tests.tracking.factories import another_reader


async def click(client, url: str, *, ua: str = BROWSER):
    return await client.get(path_of(url), headers={"user-agent": ua}, follow_redirects=False)


async def stored_reasons(app) -> list[str]:
    await app.state.click_buffer.flush()
    return [r["reason"] for r in await Click.select(Click.reason).order_by(Click.id)]


async def test_a_click_after_the_counted_view_is_valid_and_a_second_one_is_a_replay(app, client, settings):
    *_, answer = await served_ad(client, settings)
    assert (await view(client, answer["view_url"])).status_code == 202
    first = await click(client, answer["click_url"])
    assert first.status_code == 302
    location = urlsplit(first.headers["location"])
    assert (location.hostname, location.path) == ("shop.example.com", "/boots") and "click_id=" in location.query
    assert "o=" not in location.query  # the offer is ours: it is not passed on
    second = await click(client, answer["click_url"])
    assert second.status_code == 302  # invalid clicks still reach the landing page
    assert await stored_reasons(app) == ["valid", "offer_replayed"]


async def test_a_click_without_a_counted_view_is_invalid(app, client, settings):
    *_, answer = await served_ad(client, settings)
    response = await click(client, answer["click_url"])
    assert response.status_code == 302
    assert await stored_reasons(app) == ["not_viewed"]


async def test_a_click_on_an_expired_offer_is_invalid(app, client, settings):
    camp, pub, s, link_id, code, _ = await served_ad(client, settings)
    token, _ = offers.issue(
        app.state.ads.offer_key,
        slot_id=s["id"],
        creative_id=camp.creatives["300x250"],
        campaign_id=camp.campaign_id,
        link_id=link_id,
        publisher_id=pub.id,
        expires_at=int(time.time()) - 5,
    )
    response = await client.get(f"/c/{code}?o={token}", headers={"user-agent": BROWSER}, follow_redirects=False)
    assert response.status_code == 302
    assert await stored_reasons(app) == ["offer_expired"]


async def test_an_offer_moved_to_another_link_or_altered_is_invalid(app, client, settings):
    camp, pub, s, link_id, code, answer = await served_ad(client, settings)
    other = await ad_campaign(settings)
    _, other_code = await join(pub, other)
    token = answer["click_url"].split("?o=", 1)[1]
    await view(client, answer["view_url"])
    for url in (f"/c/{other_code}?o={token}", f"/c/{code}?o={token[:-2]}AA", f"/c/{code}?o=nonsense"):
        assert (await client.get(url, headers={"user-agent": BROWSER}, follow_redirects=False)).status_code == 302
    assert await stored_reasons(app) == ["offer_invalid"] * 3


async def test_a_bot_clicking_an_ad_is_a_bot(app, client, settings):
    *_, answer = await served_ad(client, settings)
    await view(client, answer["view_url"])
    await click(client, answer["click_url"], ua="python-requests/2.32")
    assert await stored_reasons(app) == ["bot"]


async def test_the_frame_shows_the_creative_linking_to_the_click_url_and_protects_itself(app, client, settings):
    camp, pub, s, link_id, code, answer = await served_ad(client, settings)
    frame = await client.get(path_of(answer["frame_url"]))
    assert frame.status_code == 200 and frame.headers["content-type"].startswith("text/html")
    policy = frame.headers["content-security-policy"]
    assert "sandbox allow-popups allow-popups-to-escape-sandbox" in policy and "allow-scripts" not in policy
    assert "frame-ancestors *" in policy and "default-src 'none'" in policy
    assert "x-frame-options" not in frame.headers  # publishers' pages frame it
    href = re.search(r'<a href="([^"]+)" target="_blank" rel="noopener sponsored"', frame.text).group(1)
    assert href == answer["click_url"]
    assert re.search(r'<img src="[^"]+/media/[0-9a-f]{32}\.png" width="300" height="250"', frame.text)
    assert "<script" not in frame.text


async def test_a_text_ad_is_escaped_in_its_frame(app, client, settings):
    camp = await ad_campaign(settings, sizes=(), text='Sale <script>alert("x")</script> & more')
    pub = await publisher(settings)
    await join(pub, camp)
    s = await slot(pub, format="native")
    answer = (await decide(client, s["public_key"])).json()
    assert (answer["width"], answer["height"]) == (None, 120)
    frame = await client.get(path_of(answer["frame_url"]))
    assert "<script>" not in frame.text
    assert "Sale &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more" in frame.text
    assert "Sponsored · shop.example.com" in frame.text


async def test_a_forged_or_expired_frame_shows_nothing(app, client, settings):
    camp, pub, s, link_id, code, answer = await served_ad(client, settings)
    token, _ = offers.issue(
        app.state.ads.offer_key,
        slot_id=s["id"],
        creative_id=camp.creatives["300x250"],
        campaign_id=camp.campaign_id,
        link_id=link_id,
        publisher_id=pub.id,
        expires_at=int(time.time()) - 5,
    )
    assert (await client.get(f"/ads/f/{token}")).status_code == 410
    assert (await client.get("/ads/f/forged-token-forged-token-forged-token-42")).status_code == 404


async def test_clicks_through_an_ad_keep_their_slot_and_the_slot_page_shows_them_beside_impressions(
    app, client, new_client, settings
):
    camp, pub, s, link_id, code, answer = await served_ad(client, settings)
    assert (await view(client, answer["view_url"])).status_code == 202
    await click(client, answer["click_url"])
    await click(client, answer["click_url"])  # a replay: invalid, but it came through the slot
    client._transport.client = ("198.51.100.9", 4000)  # another reader, on the publisher's plain link
    another_reader(client)
    await client.get(f"/c/{code}", headers={"user-agent": BROWSER}, follow_redirects=False)
    await app.state.click_buffer.flush()
    await app.state.ads.buffer.flush()
    assert [(r["reason"], r["slot"]) for r in await Click.select(Click.reason, Click.slot).order_by(Click.id)] == [
        ("valid", s["id"]),
        ("offer_replayed", s["id"]),
        ("valid", None),
    ]

    browser = new_client()
    await login(browser, pub.email)
    page = await browser.get(f"/publisher/slots/{s['id']}")
    assert page.status_code == 200, page.text
    assert re.search(r'data-testid="valid-views">1<', page.text)
    assert re.search(r'data-testid="valid-clicks">1<', page.text)
    assert re.search(r'data-testid="invalid-clicks">1<', page.text)
    assert re.search(r'data-testid="click-rate">100%<', page.text)
    assert "Ad clicked again from the same offer" in page.text  # the invalid click's reason, in words
