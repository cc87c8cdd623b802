"""Reports count what was stored since the last rollup straight from the raw events, so they agree
with the dashboards at once, and say when the figures were counted."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from server.reports import rollup
from tests.conversions.factories import api_key, campaign_and_click, click_id_of, postback
from tests.factories import login
from tests.tracking.factories import another_reader


async def _publisher_figures(browser) -> dict:
    body = (await browser.api.get("/api/v1/publisher/reports")).json()
    [eur] = body["figures"]
    return eur


async def test_a_conversion_recorded_just_now_is_in_the_report_before_any_rollup(
    app, clean, client, new_client, settings
):
    setup, click_id, token = await campaign_and_click(settings, client)
    await app.state.click_buffer.flush()
    assert await rollup.updated_at() is None  # no rollup has ever run
    response = await postback(client, click_id=click_id, txn_id="order-1", token=token)
    assert response.json()["status"] == "accepted", response.text

    browser = new_client()
    await login(browser, setup.publisher_email)
    browser.api = new_client()
    browser.api.headers["authorization"] = f"Bearer {await api_key(setup.publisher)}"
    dashboard = await browser.get("/publisher")
    assert re.search(r'data-testid="conversions-total">1<', dashboard.text)

    page = await browser.get("/publisher/reports")
    assert page.status_code == 200, page.text
    assert re.search(r'data-testid="conversions">1<', page.text)
    assert re.search(r'data-testid="clicks">1<', page.text)
    assert "Nothing yet" not in page.text
    assert "straight from the recorded events" in page.text
    eur = await _publisher_figures(browser)
    assert (eur["clicks"], eur["conversions"], eur["payout_pending_minor"]) == (1, 1, 800)
    body = (await browser.api.get("/api/v1/publisher/reports")).json()
    assert body["updated_at"] is None and body["live_from"] is None  # every hour counted from the raw events

    advertiser = new_client()
    advertiser.headers["authorization"] = f"Bearer {await api_key(setup.advertiser)}"
    [spent] = (await advertiser.get("/api/v1/advertiser/reports")).json()["figures"]
    assert (spent["clicks"], spent["conversions"], spent["pending_minor"]) == (1, 1, 1_000)


async def test_figures_rolled_up_and_counted_live_add_up_once(app, clean, client, new_client, settings):
    setup, click_id, token = await campaign_and_click(settings, client)
    await app.state.click_buffer.flush()
    assert (await postback(client, click_id=click_id, txn_id="order-1", token=token)).json()["status"] == "accepted"
    await rollup.roll_up(datetime.now(UTC))  # the click and the first conversion are rolled up

    browser = new_client()
    await login(browser, setup.publisher_email)
    browser.api = new_client()
    browser.api.headers["authorization"] = f"Bearer {await api_key(setup.publisher)}"
    eur = await _publisher_figures(browser)
    assert (eur["clicks"], eur["conversions"]) == (1, 1)  # the current hour is not counted twice
    body = (await browser.api.get("/api/v1/publisher/reports")).json()
    assert body["updated_at"] is not None and body["live_from"] <= body["updated_at"]

    # Another reader's click and conversion after the rollup ran: in the report at once, and
    # counted once after the next run.
    another_reader(client)
    client._transport.client = ("198.51.100.7", 4000)
    second = await click_id_of(client, setup.code)
    await app.state.click_buffer.flush()
    assert (await postback(client, click_id=second, txn_id="order-2", token=token)).json()["status"] == "accepted"
    eur = await _publisher_figures(browser)
    assert (eur["clicks"], eur["conversions"], eur["payout_pending_minor"]) == (2, 2, 1_600)
    page = await browser.get("/publisher/reports")
    assert re.search(r'data-testid="conversions">2<', page.text)
    assert "from the hourly summaries, and live since then" in page.text
    await rollup.roll_up(datetime.now(UTC))
    eur = await _publisher_figures(browser)
    assert (eur["clicks"], eur["conversions"], eur["payout_pending_minor"]) == (2, 2, 1_600)
