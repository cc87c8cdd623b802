"""The advertiser's reports: spend, conversions, CPA and ROI of their own campaigns, and their
prepaid balance day by day as the ledger has it."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from server.accounts.tables import Role
from server.conversions import review
from server.conversions.tables import Conversion
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.reports import rollup
from tests.ads.factories import as_user
from tests.conversions.factories import api_key, campaign_and_click, postback
from tests.earnings.factories import fund
from tests.factories import login, make_advertiser, staff_client
from tests.reports.test_publisher_reports import _html_table, machine
from tests.reports.world import BASE, Event, build
from tests.tracking.factories import campaign_with_link


async def _api(new_client, user) -> object:
    client = new_client()
    client.headers["authorization"] = f"Bearer {await api_key(user)}"
    return client


async def test_spend_cpa_and_roi_count_the_advertisers_own_conversions(app, new_client, settings):
    world = await build(settings)
    a, b = world.publishers
    day = BASE + timedelta(hours=12)
    await world.add(
        [
            Event("click", a, world.cpa_campaign, day),
            Event("click", b, world.cpa_campaign, day),
            Event("conversion", a, world.cpa_campaign, day, status="approved", payout=700, price=1_000, sale=12_000),
            Event("conversion", b, world.cpa_campaign, day, status="released", payout=1_400, price=2_000, sale=8_000),
            Event("conversion", a, world.cpa_campaign, day, status="pending", payout=700, price=1_000, sale=5_000),
            Event("conversion", b, world.cpa_campaign, day, status="rejected", payout=700, price=1_000),
        ]
    )
    await rollup.rebuild_all()
    await rollup.roll_up(datetime.now(UTC))  # the cursor at now: the reports read these hours from the rollups
    setup_advertiser = (await Conversion.select(Conversion.campaign.advertiser.id.as_alias("adv")).first())["adv"]
    advertiser = as_user(setup_advertiser, world.emails[setup_advertiser], Role.advertiser)
    client = await _api(new_client, advertiser)
    body = (
        await client.get("/api/v1/advertiser/reports", params={"from": "2026-11-01", "to": "2026-11-01", "tz": "UTC"})
    ).json()
    [eur] = body["figures"]
    assert (eur["clicks"], eur["conversions"], eur["approved"]) == (2 + 4, 3, 2)  # each conversion has its click
    assert (eur["spend_minor"], eur["pending_minor"], eur["sales_minor"]) == (3_000, 1_000, 20_000)
    assert Decimal(eur["cpa_minor"]) == 1_500
    assert Decimal(eur["roi"]) == (Decimal(20_000 - 3_000) / 3_000).quantize(Decimal("1e-12"))  # 566.67 %
    by_publisher = {r["publisher"]: r for r in body["tables"]["by_publisher"]}
    assert by_publisher[a]["spend"] == 1_000 and by_publisher[b]["spend"] == 2_000
    assert {r["label"] for r in body["tables"]["by_goal"]} == {"sale"}

    # Another advertiser sees none of it; publishers and finance are refused the advertiser's report.
    other_id, other_email = await make_advertiser()
    other = await _api(new_client, as_user(other_id, other_email, Role.advertiser))
    nothing = (await other.get("/api/v1/advertiser/reports", params={"from": "2026-11-01", "to": "2026-11-01"})).json()
    assert nothing["figures"] == [] and nothing["tables"]["by_campaign"] == []
    publisher = await _api(new_client, as_user(a, world.emails[a], Role.publisher))
    assert (await publisher.get("/api/v1/advertiser/reports")).status_code == 403
    finance, _ = await staff_client(new_client, Role.finance)
    assert (await finance.get("/advertiser/reports")).status_code == 403
    assert (await finance.get("/advertiser/reports.csv")).status_code == 403


async def test_the_balance_burns_down_as_the_ledger_charges_it(app, client, new_client, settings):
    # CPA 10.00, publisher's default share; two sales on one click.
    setup, click_id, token = await campaign_and_click(settings, client, goal_0_per_click="2")
    await fund(setup, 5_000)
    ids = []
    for n in range(2):
        response = await postback(client, click_id=click_id, txn_id=f"order-{n}", token=token)
        ids.append(response.json()["conversion_id"])
    await app.state.click_buffer.flush()  # the click rows the self_conversion rule reads before any approval
    await review.decide(setup.advertiser, ids, "approve")
    await rollup.roll_up(datetime.now(UTC))
    today = datetime.now(UTC).date().isoformat()
    api = await _api(new_client, setup.advertiser)
    body = (await api.get("/api/v1/advertiser/reports", params={"from": today, "to": today, "tz": "UTC"})).json()
    [eur] = body["figures"]
    left = await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id)
    assert left == 5_000 - 2_000
    assert (eur["spend_minor"], eur["approved"], eur["balance_minor"]) == (2_000, 2, left)
    assert eur["days_left"] == left // 2_000  # a day at today's charge
    [balance_day] = body["tables"]["balance"]
    assert (balance_day["added"], balance_day["spent"], balance_day["closing"]) == (5_000, 2_000, left)

    # The page shows the same table, and its CSV holds those cells in machine formats.
    browser = new_client()
    await login(browser, setup.advertiser.email)
    page = await browser.get("/advertiser/reports", params={"from": today, "to": today, "tz": "UTC"})
    assert page.status_code == 200
    for name in ("by_day", "by_campaign", "by_publisher", "by_goal", "balance"):
        download = await browser.get(
            "/advertiser/reports.csv", params={"from": today, "to": today, "tz": "UTC", "table": name}
        )
        shown = _html_table(page.text, name)
        assert list(csv.reader(io.StringIO(download.text))) == [shown[0], *map(machine, shown[1:])], name
    assert ["Day", "Currency", "Added", "Charged", "Balance at the end of the day"] == _html_table(
        page.text, "balance"
    )[0]
    shown_day = f"{int(today[5:7])}/{int(today[8:10])}/{today[:4]}"
    assert _html_table(page.text, "balance")[1] == [shown_day, "EUR", "€50.00", "€20.00", "€30.00"]


async def test_a_campaign_of_another_advertiser_never_reaches_the_report(app, client, new_client, settings):
    mine = await campaign_with_link(settings)
    theirs, click_id, token = await campaign_and_click(settings, client)
    await postback(client, click_id=click_id, txn_id="their-order", token=token)
    await rollup.roll_up(datetime.now(UTC))
    api = await _api(new_client, mine.advertiser)
    body = (await api.get("/api/v1/advertiser/reports")).json()
    assert body["figures"] == [] and all(rows == [] for name, rows in body["tables"].items() if name != "balance")
    assert (await (await _api(new_client, theirs.advertiser)).get("/api/v1/advertiser/reports")).json()["figures"][0][
        "conversions"
    ] == 1
