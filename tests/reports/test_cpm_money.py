"""CPM money as people see it: a publisher's impression hours count in their pending and available
earnings like CPC hours and are listed hour by hour with the slot that showed them (their payout
only, their own rows only); an advertiser sees the impressions they paid for and what they cost.
Every figure is the ledger's."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import timedelta

from server.accounts.identity import CurrentUser
from server.ads.service import write_impressions
from server.earnings import cpm
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.reports import earnings, spending
from tests.ads.factories import AdCampaign, ad_campaign, join, publisher, slot
from tests.conversions.factories import api_key
from tests.earnings.factories import NOW, at
from tests.earnings.factories import fund as fund_setup
from tests.factories import login
from tests.tracking.factories import Setup

_offer = itertools.count(1)


@dataclass
class Shown:
    """A CPM campaign (2.50 per thousand to the advertiser, 1.99 to publishers) and its slots."""

    camp: AdCampaign
    slots: dict[int, int]  # publisher id -> slot id

    async def fund(self, amount: int) -> None:
        await fund_setup(Setup(self.camp.advertiser, None, "", self.camp.campaign_id, "", 0), amount)  # type: ignore[arg-type]

    async def views(self, pub: CurrentUser, hour: int, n: int) -> None:
        await write_impressions(
            [
                (
                    f"money-{next(_offer):010d}",
                    at(hour) + timedelta(milliseconds=3 * i),
                    self.slots[pub.id],
                    self.camp.creatives["300x250"],
                    self.camp.campaign_id,
                    pub.id,
                    "visitor",
                    "valid",
                    "",
                )
                for i in range(n)
            ]
        )


async def shown_by(settings, *publishers: CurrentUser, name: str, slot_name: str = "Sidebar", **terms) -> Shown:
    camp = await ad_campaign(settings, cpm="2.50", cpm_publisher="1.99", name=name, **terms)
    slots = {}
    for pub in publishers:
        await join(pub, camp)
        slots[pub.id] = (await slot(pub, name=f"{slot_name} of {pub.id}"))["id"]
    return Shown(camp, slots)


async def test_impression_hours_count_in_pending_and_available_like_click_hours_and_are_listed(
    clean, new_client, settings
):
    pub, other = await publisher(settings), await publisher(settings)
    released = await shown_by(settings, pub, other, name="Knife Shop", hold_days="0")
    in_hold = await shown_by(settings, pub, name="Boot Shop", slot_name="Footer", hold_days="30")
    poor = await shown_by(settings, pub, name="Poor Shop", hold_days="30")
    await released.fund(10_000)
    await in_hold.fund(10_000)
    await released.views(pub, 9, 1000)  # 1.99 for the publisher, available at once (no hold)
    await released.views(other, 9, 3000)  # another publisher's hour: 5.97, never shown to the first
    await in_hold.views(pub, 10, 2000)  # 3.98, charged, in its hold
    await poor.views(pub, 10, 400)  # 0.79, waiting for the advertiser's funds
    await cpm.run(now=NOW)

    [money] = await earnings.money_of(pub.id)
    assert (money.pending_uncharged_minor, money.pending_charged_minor, money.available_minor) == (79, 398, 199)
    # The figures are the ledger's: charged earnings are in publisher_pending / publisher_available.
    assert money.pending_charged_minor == await ledger.balance(K.publisher_pending, "EUR", pub.id)
    assert money.available_minor == await ledger.balance(K.publisher_available, "EUR", pub.id)

    hours = await earnings.impression_earnings_of(pub.id)
    assert [(h.hour, h.campaign_name, h.slots, h.paid_impressions, h.payout_minor, h.status) for h in hours] == [
        (at(10), "Poor Shop", [f"Sidebar of {pub.id}"], 400, 79, "waiting"),
        (at(10), "Boot Shop", [f"Footer of {pub.id}"], 2000, 398, "approved"),
        (at(9), "Knife Shop", [f"Sidebar of {pub.id}"], 1000, 199, "released"),
    ]  # newest first
    assert hours[0].status_text == "Waiting for the advertiser's funds"
    assert hours[1].status_text.startswith("Pending: in its hold until")

    browser = new_client()
    await login(browser, pub.email)
    page = await browser.get("/publisher")
    assert page.status_code == 200, page.text
    assert re.search(r'data-testid="earnings-pending">€4.77<', page.text)  # 0.79 waiting + 3.98 in hold
    assert re.search(r'data-testid="earnings-available">€1.99<', page.text)
    assert page.text.count('data-testid="impression-earnings-row"') == 3
    assert f"Footer of {pub.id}" in page.text and "€3.98" in page.text
    assert f"Sidebar of {other.id}" not in page.text and "€5.97" not in page.text  # the other publisher's
    assert "€5.00" not in page.text and "€2.50" not in page.text  # the advertisers' prices

    response = await new_client().get(
        "/api/v1/publisher/earnings", headers={"authorization": f"Bearer {await api_key(pub)}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(h["campaign_name"], h["payout_minor"], h["status"]) for h in body["impressions"]] == [
        ("Poor Shop", 79, "waiting"),
        ("Boot Shop", 398, "approved"),
        ("Knife Shop", 199, "released"),
    ]
    assert "price_minor" not in response.text and "margin" not in response.text
    assert body["balances"][0]["pending_uncharged_minor"] == 79
    assert await ledger.check() == []


async def test_an_advertiser_sees_the_impressions_they_paid_for_and_what_they_cost(clean, new_client, settings):
    pub = await publisher(settings)
    shown = await shown_by(settings, pub, name="Knife Shop", total_budget="3.00")
    stranger = await shown_by(settings, pub, name="Other Shop")
    await shown.fund(10_000)
    await stranger.fund(10_000)
    await shown.views(pub, 9, 1000)  # 2.50
    await shown.views(pub, 10, 1000)  # 0.50 left in the budget: 200 paid
    await stranger.views(pub, 9, 3000)  # 7.50, another advertiser's
    await cpm.run(now=NOW)

    charged = 10_000 - await ledger.balance(K.advertiser_balance, "EUR", shown.camp.advertiser.id)
    assert charged == 300
    [row] = await spending.paid_for(shown.camp.advertiser.id)
    assert (row.kind, row.paid_units, row.charged_minor, row.waiting_minor) == (
        "impressions",
        1200,
        charged,
        0,
    )
    assert await spending.spend_of(shown.camp.advertiser.id) == {"EUR": charged}

    browser = new_client()
    await login(browser, shown.camp.advertiser.email)
    page = await browser.get(f"/advertiser/campaigns/{shown.camp.campaign_id}")
    assert page.status_code == 200, page.text
    assert 'data-kind="impressions"' in page.text and "1200 impressions" in page.text and "€3.00" in page.text
    dashboard = await browser.get("/advertiser")
    assert re.search(r'data-testid="spend" data-currency="EUR">€3.00<', dashboard.text)
    assert "Other Shop" not in dashboard.text and "€7.50" not in dashboard.text
    # Another advertiser's campaign page is not theirs to see.
    assert (await browser.get(f"/advertiser/campaigns/{stranger.camp.campaign_id}")).status_code == 404
    assert await ledger.check() == []
