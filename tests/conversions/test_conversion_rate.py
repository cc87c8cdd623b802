"""rate_anomaly's conversion-rate variant: a publisher's conversions per valid click today far above
their own 14-day rate holds the conversion, once both sides have the minimum volumes; tunable and
switchable per campaign like the other rules."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from server.conversions.tables import Conversion, ConversionFlag
from server.reports.tables import TrafficCampaignHour
from server.tracking.tokens import issue_click_id
from tests.conversions.factories import postback, secrets_of
from tests.factories import login, post_form
from tests.tracking.factories import campaign_with_link

ALL_ON = {
    "too_fast.enabled": "1",
    "rate_anomaly.enabled": "1",
    "conversion_rate.enabled": "1",
    "self_conversion.enabled": "1",
}


async def valid_clicks(setup, at: datetime, clicks: int) -> None:
    """The reports' hourly rollup as the worker writes it: `clicks` valid clicks in the hour of `at`."""
    await TrafficCampaignHour.insert(
        TrafficCampaignHour(
            hour=at.replace(minute=0, second=0, microsecond=0),
            publisher=setup.publisher.id,
            campaign=setup.campaign_id,
            currency="EUR",
            reason="valid",
            clicks=clicks,
        )
    )


async def convert(app, client, setup, token: str, txn_id: str) -> int:
    click_id = issue_click_id(app.state.redirector.token_key, setup.link_id, int(time.time()) - 600)
    response = await postback(client, click_id=click_id, txn_id=txn_id, token=token)
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    return response.json()["conversion_id"]


async def tuned_campaign(app, client, new_client, settings, **knobs: str):
    setup = await campaign_with_link(settings)
    token = (await secrets_of(setup.campaign_id))["postback_secret"]
    advertiser = new_client()
    await login(advertiser, setup.advertiser.email)
    await advertiser.get(f"/advertiser/campaigns/{setup.campaign_id}/rules")
    saved = await post_form(advertiser, f"/advertiser/campaigns/{setup.campaign_id}/rules", {**ALL_ON, **knobs})
    assert saved.status_code == 200, saved.text
    # The baseline: 200 valid clicks and 2 conversions (1 %) over the 14 days before today.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await valid_clicks(setup, today - timedelta(days=3, hours=-5), 200)
    for n in range(2):
        past = await convert(app, client, setup, token, f"past-{n}")
        at = today - timedelta(days=2) + timedelta(hours=n)
        await Conversion.update({Conversion.converted_at: at, Conversion.clicked_at: at - timedelta(minutes=10)}).where(
            Conversion.id == past
        )
    app.state.conversion_rules.clear()  # the history was rewritten under the server's memory
    # Today: 20 valid clicks so far.
    await valid_clicks(setup, datetime.now(UTC), 20)
    return setup, token


async def test_a_conversion_rate_far_above_the_publishers_own_is_held_with_its_figures(
    app, client, new_client, settings
):
    setup, token = await tuned_campaign(
        app,
        client,
        new_client,
        settings,
        **{"conversion_rate.min_conversions": "3", "conversion_rate.min_baseline_clicks": "100"},
    )
    ids = [await convert(app, client, setup, token, f"today-{n}") for n in range(3)]
    held = [(await Conversion.select(Conversion.held).where(Conversion.id == i).first())["held"] for i in ids]
    # 1 and 2 conversions today are under the minimum of 3; the third makes 15 % against 1 %.
    assert held == [False, False, True]
    [flag] = await ConversionFlag.select().where(ConversionFlag.conversion == ids[2])
    assert flag["rule"] == "rate_anomaly"
    assert json.loads(flag["evidence"]) == {
        "variant": "conversion_rate",
        "conversions_today": 3,
        "valid_clicks_today": 20,
        "rate_today_percent": "15.00",
        "conversions_14d": 2,
        "valid_clicks_14d": 200,
        "rate_14d_percent": "1.00",
        "multiple": 5,
        "min_conversions": 3,
        "min_baseline_clicks": 100,
    }


async def test_without_enough_baseline_clicks_or_switched_off_nothing_is_held(app, client, new_client, settings):
    setup, token = await tuned_campaign(
        app,
        client,
        new_client,
        settings,
        **{"conversion_rate.min_conversions": "3", "conversion_rate.min_baseline_clicks": "201"},
    )
    ids = [await convert(app, client, setup, token, f"today-{n}") for n in range(4)]
    assert await ConversionFlag.count() == 0
    advertiser = new_client()
    await login(advertiser, setup.advertiser.email)
    await advertiser.get(f"/advertiser/campaigns/{setup.campaign_id}/rules")
    off = {k: v for k, v in ALL_ON.items() if k != "conversion_rate.enabled"}
    saved = await post_form(
        advertiser,
        f"/advertiser/campaigns/{setup.campaign_id}/rules",
        {**off, "conversion_rate.min_baseline_clicks": "100"},
    )
    assert saved.status_code == 200, saved.text
    ids.append(await convert(app, client, setup, token, "today-off"))
    assert await ConversionFlag.count() == 0
    assert not any(r["held"] for r in await Conversion.select(Conversion.held).where(Conversion.id.is_in(ids)))
