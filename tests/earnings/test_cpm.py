"""CPM earnings: each closed hour of valid impressions is priced once per publisher within the
budgets, charged through the ledger once (or left waiting while the advertiser cannot pay), and
released when its hold ends; fractions of a cent are carried, never lost or made up."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from server.ads.service import write_impressions
from server.campaigns.tables import Campaign
from server.earnings import cpm, spend
from server.earnings.tables import ImpressionEarning
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from tests.ads.factories import AdCampaign, ad_campaign, join, publisher, slot
from tests.earnings.factories import NOW, at
from tests.earnings.factories import fund as fund_setup
from tests.tracking.factories import Setup
from workers import settings as worker_settings

_offer = itertools.count(1)


@given(
    a=st.integers(min_value=1, max_value=100_000),
    data=st.data(),
    hours=st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=12),
)
def test_hour_by_hour_the_totals_are_exactly_the_floor_of_the_whole(a, data, hours):
    p = data.draw(st.integers(min_value=0, max_value=a))
    before = (0, 0, 0)
    for n in hours:
        price, payout, margin = cpm.increments(before, n, a, p)
        assert price == payout + margin and 0 <= payout <= price and margin >= 0
        before = (before[0] + n, before[1] + price, before[2] + payout)
    total = sum(hours)
    assert before[1] == total * a // 1000  # the advertiser: exactly the whole, floored once
    assert total * p // 1000 - 1 <= before[2] <= total * p // 1000  # the publisher: a cent behind at most


class Ads:
    """A CPM campaign, its publishers' slots, and impressions stored as the view buffer stores them."""

    def __init__(self, camp: AdCampaign, slots: dict[int, int]) -> None:
        self.camp = camp
        self.slots = slots  # publisher id -> slot id

    async def views(self, publisher_id: int, moments: list[datetime], reason: str = "valid") -> None:
        rows = [
            (
                f"cpm-{next(_offer):010d}",
                moment,
                self.slots[publisher_id],
                self.camp.creatives["300x250"],
                self.camp.campaign_id,
                publisher_id,
                "visitor",
                reason,
                "",
            )
            for moment in moments
        ]
        await write_impressions(rows)

    async def fund(self, amount: int) -> None:
        await fund_setup(Setup(self.camp.advertiser, None, "", self.camp.campaign_id, "", 0), amount)  # type: ignore[arg-type]


async def cpm_campaign(settings, publishers: int = 1, **terms) -> tuple[Ads, list[int]]:
    camp = await ad_campaign(settings, **{"cpm": "2.50", "cpm_publisher": "1.99", "hold_days": "30", **terms})
    slots, ids = {}, []
    for _ in range(publishers):
        pub = await publisher(settings)
        await join(pub, camp)
        slots[pub.id] = (await slot(pub))["id"]
        ids.append(pub.id)
    return Ads(camp, slots), ids


def spread(hour: int, n: int, *, days: int = 0) -> list[datetime]:
    return [at(hour, days=days) + timedelta(milliseconds=3 * i) for i in range(n)]


async def rows() -> list[dict]:
    return await ImpressionEarning.select().order_by(ImpressionEarning.hour, ImpressionEarning.publisher)


async def balances(ads: Ads, *publishers: int) -> dict[str, int]:
    found = {
        "advertiser": await ledger.balance(K.advertiser_balance, "EUR", ads.camp.advertiser.id),
        "network": await ledger.balance(K.network_revenue, "EUR"),
    }
    for p in publishers:
        found[f"pending:{p}"] = await ledger.balance(K.publisher_pending, "EUR", p)
        found[f"available:{p}"] = await ledger.balance(K.publisher_available, "EUR", p)
    return found


async def test_each_publishers_valid_impressions_of_a_closed_hour_are_charged_and_cents_conserved(clean, settings):
    ads, (one, two) = await cpm_campaign(settings, publishers=2)
    await ads.fund(10_000)
    await ads.views(one, spread(10, 1000))
    await ads.views(two, spread(10, 400))
    await ads.views(one, spread(10, 50), reason="bot")  # recorded, never paid
    await ads.views(one, spread(10, 7), reason="frequency_capped")

    outcome = await cpm.run(now=NOW)

    assert (outcome.priced, outcome.charged, outcome.waiting) == (2, 2, 0)
    by_publisher = {r["publisher"]: r for r in await rows()}
    assert [
        (
            r["valid_impressions"],
            r["paid_impressions"],
            r["price_minor"],
            r["payout_minor"],
            r["margin_minor"],
            r["status"],
        )
        for r in (by_publisher[one], by_publisher[two])
    ] == [(1000, 1000, 250, 199, 51, "approved"), (400, 400, 100, 79, 21, "approved")]
    # The advertiser paid exactly what the publishers earned plus the network's margin (I13).
    assert await balances(ads, one, two) == {
        "advertiser": 10_000 - 350,
        "network": 51 + 21,
        f"pending:{one}": 199,
        f"available:{one}": 0,
        f"pending:{two}": 79,
        f"available:{two}": 0,
    }
    txns = (
        await LedgerTxn.select().where(LedgerTxn.reference_type == "impression_hour").order_by(LedgerTxn.reference_id)
    )
    assert [(t["reference_id"], t["idempotency_key"]) for t in txns] == [
        (r["id"], f"impression_hour:{r['id']}:approved") for r in sorted(by_publisher.values(), key=lambda r: r["id"])
    ]
    assert await spend.spent_minor(ads.camp.campaign_id) == 350
    assert await ledger.check() == []


async def test_fractions_of_a_cent_are_carried_from_hour_to_hour(clean, settings):
    ads, (pub,) = await cpm_campaign(settings)
    await ads.fund(10_000)
    for hour in range(10):  # one impression an hour, a quarter of a cent each
        await ads.views(pub, spread(hour, 1))
    await cpm.run(now=NOW)
    priced = await rows()
    assert [r["price_minor"] for r in priced] == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0]
    assert sum(r["price_minor"] for r in priced) == 10 * 250 // 1000 == 2
    assert sum(r["payout_minor"] for r in priced) == 10 * 199 // 1000 == 1
    assert all(r["price_minor"] == r["payout_minor"] + r["margin_minor"] for r in priced)
    assert await balances(ads, pub) == {
        "advertiser": 10_000 - 2,
        "network": 1,
        f"pending:{pub}": 1,
        f"available:{pub}": 0,
    }
    assert await ledger.check() == []


async def test_running_twice_or_in_two_workers_at_once_charges_each_hour_once(clean, settings):
    ads, (one, two) = await cpm_campaign(settings, publishers=2, hold_days="0")
    await ads.fund(100_000)
    for hour in (8, 9, 10, 11):
        await ads.views(one, spread(hour, 400))
        await ads.views(two, spread(hour, 200))
    first, second = await asyncio.gather(cpm.run(now=NOW), cpm.run(now=NOW))
    assert first.priced + second.priced == 8 and first.charged + second.charged == 8
    assert first.released + second.released == 8  # no hold: released in the same run
    again = await cpm.run(now=NOW)
    assert (again.priced, again.charged, again.released) == (0, 0, 0)
    assert await ImpressionEarning.count() == 8
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "impression_hour") == 8 * 2
    # The publishers' totals are floored once over the four hours (1,600 × 1.99 / 1000 = 318.4 → 318), not
    # each hour (4 × 79 = 316): no fraction of a cent is lost hour by hour.
    assert await balances(ads, one, two) == {
        "advertiser": 100_000 - 600,
        "network": 600 - 318 - 159,
        f"pending:{one}": 0,
        f"available:{one}": 318,
        f"pending:{two}": 0,
        f"available:{two}": 159,
    }
    assert await ledger.check() == []


async def test_the_current_hour_waits_until_it_has_closed_and_settled(clean, settings):
    ads, (pub,) = await cpm_campaign(settings)
    await ads.fund(10_000)
    await ads.views(pub, spread(12, 800))
    assert (await cpm.run(now=NOW)).priced == 0
    assert (await cpm.run(now=at(13, 1))).priced == 0  # views may still be in a server's buffer
    assert (await cpm.run(now=at(13, 5))).charged == 1


async def test_impressions_beyond_the_budget_are_not_paid_and_say_why(clean, settings):
    ads, (one, two) = await cpm_campaign(settings, publishers=2, total_budget="1.00")
    await ads.fund(10_000)
    await ads.views(one, spread(9, 300))
    await ads.views(two, [m + timedelta(seconds=1) for m in spread(9, 300)])  # after the first's, in time
    await cpm.run(now=NOW)
    by_publisher = {r["publisher"]: r for r in await rows()}
    # 1.00 buys 400 impressions at 2.50 per thousand, the earliest first whoever brought them.
    assert (by_publisher[one]["paid_impressions"], by_publisher[two]["paid_impressions"]) == (300, 100)
    assert by_publisher[two]["over_budget_impressions"] == 200
    assert by_publisher[two]["unpaid_reason"] == "200 beyond what the total budget still allowed"
    assert await spend.spent_minor(ads.camp.campaign_id) == 100
    await ads.views(one, spread(10, 100))
    await cpm.run(now=NOW)
    assert await spend.spent_minor(ads.camp.campaign_id) == 100  # never more than the budget
    assert await ledger.check() == []


async def test_an_hour_the_balance_cannot_cover_waits_pauses_the_campaign_and_is_paid_after_funding(clean, settings):
    ads, (pub,) = await cpm_campaign(settings)
    await ads.fund(250)
    await ads.views(pub, spread(9, 800))  # 2.00: covered
    await ads.views(pub, spread(10, 800))  # 2.00 more: not covered
    await ads.views(pub, spread(11, 4))  # a cent (the carried fractions): waits behind hour 10
    outcome = await cpm.run(now=NOW)
    assert outcome.paused_campaigns == [ads.camp.campaign_id] and outcome.waiting == 2
    assert [(r["status"], r["price_minor"], r["status_reason"]) for r in await rows()] == [
        ("approved", 200, ""),
        ("waiting", 200, cpm.WAITING_FOR_FUNDS),
        ("waiting", 1, cpm.WAITING_BEHIND),
    ]
    campaign = await Campaign.select(Campaign.status).where(Campaign.id == ads.camp.campaign_id).first()
    assert campaign["status"] == "paused"
    assert await ledger.balance(K.advertiser_balance, "EUR", ads.camp.advertiser.id) == 50  # never below zero

    await ads.fund(1_000)
    later = await cpm.run(now=NOW + timedelta(minutes=5))
    assert (later.charged, later.waiting) == (2, 0)
    assert await balances(ads, pub) == {
        "advertiser": 1_250 - 401,
        "network": 41 + 41 + 0,
        f"pending:{pub}": 159 + 159 + 1,
        f"available:{pub}": 0,
    }
    assert await ledger.check() == []


async def test_earnings_become_available_when_the_hold_of_their_hour_ends(clean, settings):
    ads, (pub,) = await cpm_campaign(settings, hold_days="1")
    await ads.fund(10_000)
    await ads.views(pub, spread(10, 2000))
    await cpm.run(now=NOW)
    assert await balances(ads, pub) == {
        "advertiser": 10_000 - 500,
        "network": 102,
        f"pending:{pub}": 398,
        f"available:{pub}": 0,
    }
    assert (await cpm.run(now=at(11, 1, days=1))).released == 1
    assert await balances(ads, pub) == {
        "advertiser": 10_000 - 500,
        "network": 102,
        f"pending:{pub}": 0,
        f"available:{pub}": 398,
    }
    assert await ledger.check() == []


def test_the_job_runs_every_five_minutes_and_at_startup():
    job = next(j for j in worker_settings.WorkerSettings.cron_jobs if j.name == "cron:settle_impression_earnings")
    assert job.run_at_startup and job.unique and job.minute == set(range(0, 60, 5))


async def test_the_worker_charges_closed_hours_by_its_clock(clean, settings):
    from tests.worker_burst import run_burst

    ads, (pub,) = await cpm_campaign(settings)
    await ads.fund(10_000)
    await ads.views(pub, spread(10, 1200))
    [result] = await run_burst(settings, {"clock": lambda: NOW}, "settle_impression_earnings")
    assert (result["priced"], result["charged"], result["waiting"]) == (1, 1, 0)
    assert await ledger.balance(K.publisher_pending, "EUR", pub) == 1200 * 199 // 1000
    assert await ledger.check() == []
