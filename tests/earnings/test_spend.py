"""One spend rule for budgets: a campaign paying per click and per thousand impressions spends one
budget, whichever of the CPC and CPM jobs prices its hours first, or both at once."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest

from server.ads.service import write_impressions
from server.earnings import cpc, cpm, spend
from server.earnings.tables import ClickEarning, ImpressionEarning
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from tests.ads.factories import ad_campaign, join, publisher, slot
from tests.earnings.factories import NOW, at, clicks, fund
from tests.tracking.factories import Setup

_offer = itertools.count(1)


async def both_goals(settings) -> tuple[Setup, tuple[int, int]]:
    """A campaign paying 0.30 a click (CPC) and 2.50 per thousand impressions (CPM), at most 0.80 a
    day and 1.00 in all, with one publisher who has a link and a slot: (the setup, (slot, banner))."""
    camp = await ad_campaign(
        settings,
        cpm="2.50",
        cpm_publisher="1.99",
        daily_budget="0.80",
        total_budget="1.00",
        goal_1_name="click",
        goal_1_model="cpc",
        goal_1_advertiser="0.30",
        goal_1_publisher="0.20",
    )
    pub = await publisher(settings)
    link_id, code = await join(pub, camp)
    slot_id = (await slot(pub))["id"]
    return Setup(camp.advertiser, pub, pub.email, camp.campaign_id, code, link_id), (slot_id, camp.creatives["300x250"])


async def views(setup: Setup, place: tuple[int, int], hour: int, n: int, *, days: int = 0) -> None:
    """n valid impressions in the hour, stored as the view buffer stores them."""
    await write_impressions(
        [
            (
                f"spend-{next(_offer):010d}",
                at(hour, days=days) + timedelta(milliseconds=3 * i),
                *place,
                setup.campaign_id,
                setup.publisher.id,
                "visitor",
                "valid",
                "",
            )
            for i in range(n)
        ]
    )


async def run_cpc_first() -> None:
    await cpc.run(now=NOW + timedelta(days=1))
    await cpm.run(now=NOW + timedelta(days=1))


async def run_cpm_first() -> None:
    await cpm.run(now=NOW + timedelta(days=1))
    await cpc.run(now=NOW + timedelta(days=1))


async def run_together() -> None:
    await asyncio.gather(cpc.run(now=NOW + timedelta(days=1)), cpm.run(now=NOW + timedelta(days=1)))


@pytest.mark.parametrize(
    "run", [run_cpc_first, run_cpm_first, run_together], ids=["cpc-first", "cpm-first", "together"]
)
async def test_a_campaign_paying_per_click_and_per_impression_never_spends_more_than_its_budgets(clean, settings, run):
    setup, place = await both_goals(settings)
    await fund(setup, 100_000)
    # Each kind alone would spend more than the budgets: 0.90 of clicks and 1.00 of impressions
    # on the first day (budget 0.80), 1.50 and 1.50 over both days (budget 1.00).
    await clicks(setup, [at(9, 1), at(9, 2)])
    await views(setup, place, 9, 200)
    await clicks(setup, [at(10, 5)])
    await views(setup, place, 10, 200)
    await clicks(setup, [at(9, 1, days=1), at(9, 2, days=1)])
    await views(setup, place, 9, 200, days=1)

    await run()

    charged = 100_000 - await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id)
    assert charged == await spend.spent_minor(setup.campaign_id) == 100  # the total budget, to the cent
    # Which hours the budget went to depends on which job came first; never more than it allows.
    assert await spend.spent_minor(setup.campaign_id, at(0), at(0, days=1)) <= 80  # the first day's budget
    hours = [*await ClickEarning.select(), *await ImpressionEarning.select()]
    assert sum(h["price_minor"] for h in hours) == 100
    assert all(h["status"] in ("approved", "unpaid") for h in hours)
    assert all(h["price_minor"] == h["payout_minor"] + h["margin_minor"] for h in hours)
    # Every cent went to the publisher or the network (I13).
    assert (
        await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id)
        + await ledger.balance(K.network_revenue, "EUR")
    ) == 100
    assert await ledger.check() == []


async def test_spend_counts_approved_conversions_and_charged_or_waiting_hours_of_both_kinds(clean, settings):
    setup, place = await both_goals(settings)
    await fund(setup, 40)  # covers the clicks of 9 o'clock, not the impressions after them
    await clicks(setup, [at(9, 1)])
    await views(setup, place, 9, 100)
    await cpc.run(now=NOW)
    await cpm.run(now=NOW)
    [click_hour] = await ClickEarning.select()
    [impression_hour] = await ImpressionEarning.select()
    assert (click_hour["status"], impression_hour["status"]) == ("approved", "waiting")
    # A waiting hour holds its share of the budget: it is owed.
    assert await spend.spent_minor(setup.campaign_id) == 30 + 25
    assert await spend.spent_minor(setup.campaign_id, since=at(10)) == 0
    assert await spend.budget_room(setup.campaign_id, 80, 100, at(9)) == (80 - 55, "the daily budget")
    assert await spend.budget_room(setup.campaign_id, None, None, at(9)) == (None, "")
    assert await ledger.check() == []
