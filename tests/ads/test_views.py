"""The view beacon: a signed, unexpired offer's view counts once, whatever is replayed, however
concurrently (across processes: tests/ads/test_processes.py); bots, floods and visitors over the
frequency cap are recorded but not valid."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from server.ads import offers
from server.ads.counting import NetworkWindows
from server.ads.decision import FREQUENCY_CAP_DAILY
from server.ads.service import write_impressions
from server.ads.tables import Impression
from tests.ads.factories import (
    BROWSER,
    ad_campaign,
    decide,
    join,
    path_of,
    publisher,
    served_ad,
    slot,
    stored_impressions,
    view,
)


async def test_a_view_counts_once_and_a_replay_is_refused(app, client, settings):
    camp, pub, s, _, _, answer = await served_ad(client, settings)
    first = await view(client, answer["view_url"])
    assert first.status_code == 202 and first.json() == {"status": "recorded", "offer": answer["offer"]}
    assert first.headers["access-control-allow-origin"] == "*"
    again = await view(client, answer["view_url"])
    assert (again.status_code, again.json()["error"]["code"]) == (409, "offer_replayed")
    [row] = await stored_impressions(app)
    assert (row["offer"], row["slot"], row["creative"], row["campaign"], row["publisher"], row["reason"]) == (
        answer["offer"],
        s["id"],
        camp.creatives["300x250"],
        camp.campaign_id,
        pub.id,
        "valid",
    )


async def test_concurrent_replays_of_one_view_count_once(app, client, settings):
    *_, answer = await served_ad(client, settings)
    responses = await asyncio.gather(*(view(client, answer["view_url"]) for _ in range(30)))
    assert sorted(r.status_code for r in responses) == [202] + [409] * 29
    assert [r["offer"] for r in await stored_impressions(app)] == [answer["offer"]]


async def test_the_database_stores_an_offers_view_once_whoever_writes_it_concurrently(app, client, settings):
    """The last line: even writers that all believe they won (Redis lost, several processes) leave one row.
    On PostgreSQL each batch is written on its own connection at the same time."""
    camp, pub, s, _, _, answer = await served_ad(client, settings)
    now = datetime.now(UTC)

    def row(offer: str, reason: str = "valid") -> tuple:
        return (offer, now, s["id"], camp.creatives["300x250"], camp.campaign_id, pub.id, "visitor", reason, "")

    batches = [[row("replayed-0001"), row(f"fresh-{i:08d}")] for i in range(12)]
    await asyncio.gather(*(write_impressions(batch) for batch in batches))
    await write_impressions([row("replayed-0001", "bot"), row("replayed-0001")])  # a retried batch, too
    offers_stored = [r["offer"] for r in await Impression.select(Impression.offer)]
    assert offers_stored.count("replayed-0001") == 1 and len(offers_stored) == 13


async def test_an_expired_offer_is_refused_and_nothing_is_stored(app, client, settings):
    camp, pub, s, link_id, _, _ = await served_ad(client, settings)
    token, _ = offers.issue(
        app.state.ads.offer_key,
        slot_id=s["id"],
        creative_id=camp.creatives["300x250"],
        campaign_id=camp.campaign_id,
        link_id=link_id,
        publisher_id=pub.id,
        expires_at=int(time.time()) - 1,
    )
    response = await client.post(f"/ads/v/{token}", headers={"user-agent": BROWSER})
    assert (response.status_code, response.json()["error"]["code"]) == (410, "offer_expired")
    assert await stored_impressions(app) == []


async def test_a_forged_or_altered_view_url_is_refused(app, client, settings):
    camp, pub, s, link_id, _, answer = await served_ad(client, settings)
    token = path_of(answer["view_url"]).rsplit("/", 1)[1]
    altered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    other_key, _ = offers.issue(
        b"not-affnets-key",
        slot_id=s["id"],
        creative_id=camp.creatives["300x250"],
        campaign_id=camp.campaign_id,
        link_id=link_id,
        publisher_id=pub.id,
        expires_at=int(time.time()) + 600,
    )
    for bad in (altered, other_key, "x" * 40, token + "A", "", "%00"):
        response = await client.post(f"/ads/v/{bad}", headers={"user-agent": BROWSER})
        assert (response.status_code, response.json()["error"]["code"]) == (400, "offer_invalid"), bad
    assert await stored_impressions(app) == []
    assert (await client.get(path_of(answer["view_url"]))).status_code == 405  # a beacon is a POST


async def test_bots_floods_and_frequent_visitors_are_recorded_but_not_valid(app, client, settings):
    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, camp)
    key = (await slot(pub))["public_key"]
    bot_answer = (await decide(client, key)).json()
    await view(client, bot_answer["view_url"], ua="curl/8.5.0")
    for _ in range(FREQUENCY_CAP_DAILY):
        assert (await view(client, (await decide(client, key)).json()["view_url"])).status_code == 202
    # The visitor has seen the campaign as often as a day allows: it is no longer offered to them...
    assert (await decide(client, key)).json()["status"] == "fallback"
    # ...and a view of an offer made before that is recorded, not valid.
    app.state.ads.frequency.cap = FREQUENCY_CAP_DAILY + 100
    late = (await decide(client, key)).json()
    app.state.ads.frequency.cap = FREQUENCY_CAP_DAILY
    assert (await view(client, late["view_url"])).status_code == 202
    await app.state.ads.buffer.flush()  # the limit a batch is classified with is the one of its flush
    app.state.ads.views.network_rate = NetworkWindows(limit=0)
    flood = (await decide(client, key, headers={"user-agent": BROWSER + " other"})).json()
    assert (await view(client, flood["view_url"], ua=BROWSER + " other")).status_code == 202
    reasons = [r["reason"] for r in await stored_impressions(app)]
    assert reasons == ["bot"] + ["valid"] * FREQUENCY_CAP_DAILY + ["frequency_capped", "rate_limited"]


async def test_views_from_a_data_centre_are_recorded_as_datacenter_and_never_counted(app, client, settings):
    """A view from a cloud or hosting network (the bundled snapshot: server/tracking/datacenter.py)
    is `datacenter`, like a click from there: recorded, never valid (so never paid: CPM pays valid
    views only). A home reader's view after it is valid."""
    camp, pub, s, _, _, answer = await served_ad(client, settings)
    client._transport.client = ("5.9.10.20", 40000)  # Hetzner
    assert (await view(client, answer["view_url"])).status_code == 202  # the same answer as any view
    await app.state.ads.buffer.flush()
    client._transport.client = ("90.12.34.56", 40000)  # a reader at home
    home = (await decide(client, s["public_key"])).json()
    assert (await view(client, home["view_url"])).status_code == 202
    assert [r["reason"] for r in await stored_impressions(app)] == ["datacenter", "valid"]
    assert app.state.ads.views.datacenter.contains("5.9.10.20")
    # Switched off (AFFNET_CLICK_QUALITY_CHECKS=off): classified as before the rule.
    app.state.ads.views.quality_checks = False
    try:
        client._transport.client = ("5.9.10.21", 40000)
        late = (await decide(client, s["public_key"], headers={"user-agent": BROWSER + " other"})).json()
        assert (await view(client, late["view_url"], ua=BROWSER + " other")).status_code == 202
    finally:
        app.state.ads.views.quality_checks = True
    assert [r["reason"] for r in await stored_impressions(app)] == ["datacenter", "valid", "valid"]


async def test_an_impression_keeps_the_country_its_proxy_named(app, client, settings):
    *_, answer = await served_ad(client, settings)
    response = await client.post(
        path_of(answer["view_url"]), headers={"user-agent": "Mozilla/5.0 Chrome/126.0", "cf-ipcountry": "SE"}
    )
    assert response.status_code == 202
    assert [r["country"] for r in await stored_impressions(app)] == ["SE"]
