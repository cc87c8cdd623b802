"""The advertiser's dashboard figures: the conversions they were reported, and what their spend
brought (sales reported with conversions of any goal, ROI, CPA), their own campaigns only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from server.campaigns.tables import Campaign
from server.conversions import approval, review
from server.conversions.tables import Conversion
from server.ledger import postings
from server.reports import spending
from tests.conversions.factories import campaign_and_click, click_id_of, conversions, postback
from tests.factories import login

LEAD_GOAL = {"goal_1_name": "lead", "goal_1_model": "cpl", "goal_1_advertiser": "2.00"}


def later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


async def report(client, setup, token: str, txn_id: str, reader: int, **params) -> dict:
    """A postback from a new reader's click on the setup's link; the conversion it stored."""
    client._transport.client = (f"198.51.100.{reader}", 4000)
    click_id = await click_id_of(client, setup.code)
    response = await postback(client, click_id=click_id, txn_id=txn_id, token=token, **params)
    assert response.json()["status"] == "accepted", response.text
    return response.json()


def figure(html: str, testid: str, currency: str = "EUR") -> str:
    found = re.search(rf'data-testid="{testid}" data-currency="{currency}">([^<]*)<', html)
    assert found, f"no {testid} figure"
    return found.group(1)


async def test_the_dashboard_counts_the_pending_and_approved_conversions_not_the_rejected(client, settings, new_client):
    setup, _, token = await campaign_and_click(settings, client)
    for i in range(3):
        await report(client, setup, token, f"order-{i}", i + 1)
    other, _, other_token = await campaign_and_click(settings, client, name="Another Shop")
    await report(client, other, other_token, "theirs", 9)  # another advertiser's
    rows = await conversions()
    await postings.fund_advertiser(setup.advertiser.id, 5_000, "EUR", reference_id=1, key="fund-dashboard")
    await review.decide(setup.advertiser, [rows[0]["id"]], "approve")
    await review.decide(setup.advertiser, [rows[1]["id"]], "reject", "Order cancelled")

    browser = new_client()
    await login(browser, setup.advertiser.email)
    page = await browser.get("/advertiser")
    assert page.status_code == 200, page.text
    # One approved, one pending; the rejected one and the other advertiser's are not theirs to count.
    assert re.search(r'data-testid="conversions">2<', page.text)
    assert "pending or approved" in page.text


async def test_a_cpa_postback_keeps_its_sale_amount_and_the_dashboard_shows_sales_roi_and_cpa(
    client, settings, new_client
):
    setup, _, token = await campaign_and_click(settings, client, hold_days=0, **LEAD_GOAL)
    sale = await report(client, setup, token, "order-1", 1, amount=4590)
    assert sale["goal"] == "sale" and sale["payout"]["sale_amount_minor"] == 4590
    assert sale["payout"]["price_minor"] == 1000  # a CPA goal's price does not follow the sale
    await report(client, setup, token, "lead-1", 2, goal="lead", amount=1500)  # a CPL goal may send one too
    await report(client, setup, token, "lead-2", 3, goal="lead")  # and may not
    stored = {r["txn_id"]: r["sale_amount_minor"] for r in await conversions()}
    assert stored == {"order-1": 4590, "lead-1": 1500, "lead-2": None}  # no amount is no sale, not 0
    # Bounds still apply: a sale amount that is no amount is refused, nothing stored.
    client._transport.client = ("198.51.100.77", 4000)
    refused = await postback(
        client, click_id=await click_id_of(client, setup.code), txn_id="o-2", token=token, amount=10**12 + 1
    )
    assert refused.status_code == 422 and refused.json()["code"] == "bad_amount"
    assert len(await conversions()) == 3

    browser = new_client()
    await login(browser, setup.advertiser.email)
    before = await browser.get("/advertiser")
    assert figure(before.text, "sales") == "—"  # nothing approved yet: no sale to show, not €0.00
    await postings.fund_advertiser(setup.advertiser.id, 10_000, "EUR", reference_id=1, key="fund-results")
    outcome = await approval.run(now=later())
    assert outcome.approved == 3

    [totals] = await spending.results_of(setup.advertiser.id)
    assert (totals.spend_minor, totals.approved, totals.sales_minor) == (1_400, 3, 6_090)
    page = await browser.get("/advertiser")
    assert figure(page.text, "spend") == "€14.00"
    assert figure(page.text, "sales") == "€60.90"
    assert figure(page.text, "roi") == "335%"  # (60.90 − 14.00) ÷ 14.00
    assert figure(page.text, "cpa") == "€4.67"  # 14.00 ÷ 3
    assert re.search(r'data-testid="conversions">3<', page.text)
    row = re.search(r'data-testid="campaign-result".*?</tr>', page.text, re.S).group(0)
    assert "€60.90" in row and "335%" in row and "€4.67" in row
    campaign_page = await browser.get(f"/advertiser/campaigns/{setup.campaign_id}")  # the same, for the campaign
    row = re.search(r'data-testid="campaign-result".*?</tr>', campaign_page.text, re.S).group(0)
    assert "€14.00" in row and "€60.90" in row and "335%" in row and "€4.67" in row

    french = await browser.get("/advertiser", headers={"Accept-Language": "fr-FR"})
    assert figure(french.text, "sales") == "60,90\u00a0€"
    assert figure(french.text, "roi") == "335\u00a0%"


async def test_flat_priced_conversions_reporting_a_sale_wait_together_when_the_balance_is_short(client, settings):
    """Only a RevShare conversion, whose price follows its sale, may wait alone while the rest are
    charged: CPA conversions that report a sale amount are charged in order, and the campaign pauses."""
    setup, _, token = await campaign_and_click(settings, client, hold_days=0)
    await report(client, setup, token, "order-1", 1, amount=20_000)
    await report(client, setup, token, "order-2", 2, amount=3_000)
    await postings.fund_advertiser(setup.advertiser.id, 1_500, "EUR", reference_id=1, key="fund-short")

    outcome = await approval.run(now=later())

    assert (outcome.approved, outcome.unfunded) == (1, 1)
    statuses = [(r["txn_id"], r["status"]) for r in await Conversion.select().order_by(Conversion.id)]
    assert statuses == [("order-1", "approved"), ("order-2", "pending")]
    assert (await Campaign.select(Campaign.status).first())["status"] == "paused"
