"""CPC earnings: each closed hour of valid clicks is priced once per publisher, within caps and
budgets, charged through the ledger once (or left waiting while the advertiser cannot pay), and
released to the publisher when its hold ends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from server.campaigns.tables import Campaign
from server.conversions import review
from server.earnings import cpc, spend
from server.earnings.tables import ClickEarning
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerEntry, LedgerTxn
from tests.conversions.factories import click_id_of, postback, secrets_of
from tests.earnings.factories import NOW, another_publisher, at, clicks, cpc_campaign, fund, spread


async def earnings() -> list[dict]:
    return await ClickEarning.select().order_by(ClickEarning.hour, ClickEarning.publisher)


async def balances(setup, *publishers: int) -> dict[str, int]:
    found = {
        "advertiser": await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id),
        "network": await ledger.balance(K.network_revenue, "EUR"),
    }
    for p in publishers:
        found[f"pending:{p}"] = await ledger.balance(K.publisher_pending, "EUR", p)
        found[f"available:{p}"] = await ledger.balance(K.publisher_available, "EUR", p)
    return found


async def test_each_publishers_valid_clicks_of_a_closed_hour_are_charged_and_cents_conserved(clean, settings):
    setup = await cpc_campaign(settings, price="0.37", payout="0.29")
    other, other_link = await another_publisher(settings, setup)
    await fund(setup, 10_000)
    await clicks(setup, spread(10, 3))
    await clicks(setup, spread(10, 2, start_minute=30), publisher_id=other, link_id=other_link)
    await clicks(setup, [at(10, 45)], reason="bot")  # invalid: never paid

    outcome = await cpc.run(now=NOW)

    assert (outcome.priced, outcome.charged, outcome.waiting) == (2, 2, 0)
    rows = {r["publisher"]: r for r in await earnings()}
    mine, theirs = rows[setup.publisher.id], rows[other]
    assert (
        mine["valid_clicks"],
        mine["paid_clicks"],
        mine["price_minor"],
        mine["payout_minor"],
        mine["margin_minor"],
    ) == (3, 3, 111, 87, 24)
    assert (theirs["valid_clicks"], theirs["price_minor"], theirs["payout_minor"], theirs["margin_minor"]) == (
        2,
        74,
        58,
        16,
    )
    assert {r["status"] for r in rows.values()} == {"approved"} and mine["currency"] == "EUR"
    # The advertiser paid exactly what the publishers earned plus the network's margin (I13).
    assert await balances(setup, setup.publisher.id, other) == {
        "advertiser": 10_000 - 185,
        "network": 24 + 16,
        f"pending:{setup.publisher.id}": 87,
        f"available:{setup.publisher.id}": 0,
        f"pending:{other}": 58,
        f"available:{other}": 0,
    }
    txns = await LedgerTxn.select().where(LedgerTxn.reference_type == "click_hour").order_by(LedgerTxn.reference_id)
    assert [(t["reference_id"], t["idempotency_key"]) for t in txns] == [
        (r["id"], f"click_hour:{r['id']}:approved") for r in sorted(rows.values(), key=lambda r: r["id"])
    ]
    assert await spend.spent_minor(setup.campaign_id) == 185
    assert await ledger.check() == []


async def test_the_current_hour_waits_until_it_has_closed(clean, settings):
    setup = await cpc_campaign(settings)
    await fund(setup, 10_000)
    await clicks(setup, [at(12, 1), at(12, 5)])
    assert (await cpc.run(now=NOW)).priced == 0
    # Just after 13:00 the hour is closed but clicks may still be on their way from the servers' buffers.
    assert (await cpc.run(now=at(13, 1))).priced == 0
    assert (await cpc.run(now=at(13, 5))).charged == 1
    assert [r["paid_clicks"] for r in await earnings()] == [2]
    assert await ledger.check() == []


async def test_running_twice_changes_nothing_the_second_time(clean, settings):
    setup = await cpc_campaign(settings)
    await fund(setup, 10_000)
    await clicks(setup, spread(9, 4) + spread(10, 2))
    first = await cpc.run(now=NOW)
    before = (await earnings(), await LedgerEntry.count(), await balances(setup, setup.publisher.id))
    second = await cpc.run(now=NOW)
    assert (first.priced, first.charged) == (2, 2)
    assert (second.priced, second.charged, second.released) == (0, 0, 0)
    assert (await earnings(), await LedgerEntry.count(), await balances(setup, setup.publisher.id)) == before
    assert await ledger.check() == []


async def test_two_workers_at_once_price_and_charge_each_hour_once(clean, settings):
    setup = await cpc_campaign(settings, price="0.50", payout="0.40", hold_days=0)
    other, other_link = await another_publisher(settings, setup)
    await fund(setup, 100_000)
    for hour in (8, 9, 10, 11):
        await clicks(setup, spread(hour, 3))
        await clicks(setup, spread(hour, 2, start_minute=20), publisher_id=other, link_id=other_link)

    first, second = await asyncio.gather(cpc.run(now=NOW), cpc.run(now=NOW))

    assert first.priced + second.priced == 8
    assert first.charged + second.charged == 8
    assert first.released + second.released == 8  # no hold: released in the same run
    rows = await earnings()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"released"}
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "click_hour") == 8 * 2  # charged + released
    assert await balances(setup, setup.publisher.id, other) == {
        "advertiser": 100_000 - 20 * 50,
        "network": 20 * 10,
        f"pending:{setup.publisher.id}": 0,
        f"available:{setup.publisher.id}": 12 * 40,
        f"pending:{other}": 0,
        f"available:{other}": 8 * 40,
    }
    assert await ledger.check() == []


async def test_clicks_over_the_daily_caps_are_not_paid_and_say_why(clean, settings):
    setup = await cpc_campaign(settings, price="1.00", payout="0.80", cap_clicks_daily=5, cap_publisher_clicks_daily=3)
    other, other_link = await another_publisher(settings, setup)
    await fund(setup, 100_000)
    await clicks(setup, spread(9, 4))  # the 4th is over the publisher cap
    await clicks(setup, spread(9, 3, start_minute=30), publisher_id=other, link_id=other_link)  # 3rd: campaign cap
    await clicks(setup, spread(10, 2), publisher_id=other, link_id=other_link)  # both over the caps
    await clicks(setup, spread(9, 2, days=1))  # the next day starts afresh

    await cpc.run(now=NOW + timedelta(days=1))

    rows = [
        (
            r["hour"].hour,
            r["publisher"],
            r["valid_clicks"],
            r["paid_clicks"],
            r["over_cap_clicks"],
            r["over_budget_clicks"],
            r["status"],
        )
        for r in await earnings()
    ]
    assert rows == [
        (9, setup.publisher.id, 4, 3, 1, 0, "approved"),
        (9, other, 3, 2, 1, 0, "approved"),
        (10, other, 2, 0, 2, 0, "unpaid"),
        (9, setup.publisher.id, 2, 2, 0, 0, "approved"),
    ]
    reasons = [r["unpaid_reason"] for r in await earnings()]
    assert reasons[0] == "1 over the daily cap of 3 clicks per publisher"
    assert reasons[1] == "1 over the campaign's daily cap of 5 clicks"
    assert reasons[3] == ""
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 100_000 - 7 * 100
    assert await ledger.check() == []


async def test_the_daily_and_total_budgets_are_never_exceeded(clean, settings):
    # 0.30 a click: the daily budget of 1.00 pays 3 clicks a day, the total of 1.50 five in all.
    setup = await cpc_campaign(settings, price="0.30", payout="0.20", daily_budget="1.00", total_budget="1.50")
    other, other_link = await another_publisher(settings, setup)
    await fund(setup, 100_000)
    await clicks(setup, spread(9, 2))
    await clicks(setup, [at(10, 0)], publisher_id=other, link_id=other_link)  # earliest click of the hour: paid
    await clicks(setup, [at(10, 30)])  # over the daily budget
    await clicks(setup, spread(9, 3, days=1), publisher_id=other, link_id=other_link)  # 2 of 3: total budget

    await cpc.run(now=NOW + timedelta(days=1))

    rows = [
        (r["hour"].day, r["hour"].hour, r["publisher"], r["paid_clicks"], r["over_budget_clicks"], r["price_minor"])
        for r in await earnings()
    ]
    assert rows == [
        (10, 9, setup.publisher.id, 2, 0, 60),
        (10, 10, setup.publisher.id, 0, 1, 0),
        (10, 10, other, 1, 0, 30),
        (11, 9, other, 2, 1, 60),
    ]
    reasons = [r["unpaid_reason"] for r in await earnings()]
    assert reasons[1] == "1 beyond what the daily budget still allowed"
    assert reasons[3] == "1 beyond what the total budget still allowed"
    assert await spend.spent_minor(setup.campaign_id) == 150
    assert await spend.spent_minor(setup.campaign_id, since=at(0, days=1)) == 60
    assert await spend.spent_minor(setup.campaign_id, until=at(10)) == 60
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 100_000 - 150
    assert await ledger.check() == []


async def test_approved_conversions_count_as_spend_against_the_budget(app, clean, client, settings):
    # One campaign pays 1.00 a click and 10.00 a sale, 12.00 a day at most.
    setup = await cpc_campaign(
        settings,
        price="1.00",
        payout="0.80",
        daily_budget="12.00",
        goal_1_name="sale",
        goal_1_model="cpa",
        goal_1_advertiser="10.00",
    )
    await fund(setup, 100_000)
    response = await postback(
        client,
        click_id=await click_id_of(client, setup.code),
        txn_id="order-1",
        token=(await secrets_of(setup.campaign_id))["postback_secret"],
        goal="sale",
    )
    assert response.json()["status"] == "accepted", response.text
    await app.state.click_buffer.flush()  # the click rows the self_conversion rule reads before any approval
    # Approved that morning: 10.00 of the day's 12.00 is spent before the 10 o'clock clicks.
    await review.decide(setup.advertiser, [response.json()["conversion_id"]], "approve", now=at(9, 30))
    await clicks(setup, spread(10, 5))

    await cpc.run(now=NOW)

    [row] = await earnings()
    assert (row["paid_clicks"], row["over_budget_clicks"], row["price_minor"]) == (2, 3, 200)
    assert await spend.spent_minor(setup.campaign_id, since=at(0), until=at(0, days=1)) == 1_200
    assert await spend.spent_minor(setup.campaign_id, until=at(9, 30)) == 0
    assert await ledger.check() == []


async def test_an_hour_the_balance_cannot_cover_waits_pauses_the_campaign_and_is_paid_after_funding(clean, settings):
    setup = await cpc_campaign(settings, price="1.00", payout="0.70")
    other, other_link = await another_publisher(settings, setup)
    await fund(setup, 450)
    await clicks(setup, spread(9, 2))  # 2.00: covered
    await clicks(setup, spread(10, 2))  # with 3.00 of the other publisher's, 5.00: not covered
    await clicks(setup, spread(10, 3, start_minute=30), publisher_id=other, link_id=other_link)
    await clicks(setup, [at(11, 0)])  # would be covered alone, but waits behind hour 10

    outcome = await cpc.run(now=NOW)

    assert (outcome.charged, outcome.waiting, outcome.paused_campaigns) == (1, 3, [setup.campaign_id])
    rows = await earnings()
    assert [(r["hour"].hour, r["status"]) for r in rows] == [
        (9, "approved"),
        (10, "waiting"),
        (10, "waiting"),
        (11, "waiting"),
    ]
    assert rows[1]["status_reason"] == cpc.WAITING_FOR_FUNDS and rows[3]["status_reason"] == cpc.WAITING_BEHIND
    # Nothing of hour 10 was posted: the balance never went below zero.
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 250
    campaign = await Campaign.select(Campaign.status).where(Campaign.id == setup.campaign_id).first()
    assert campaign["status"] == "paused"
    assert await ledger.check() == []

    assert (await cpc.run(now=NOW + timedelta(minutes=5))).charged == 0  # still short: still waiting

    await fund(setup, 500)
    outcome = await cpc.run(now=NOW + timedelta(minutes=10))
    assert (outcome.charged, outcome.waiting, outcome.paused_campaigns) == (3, 0, [])
    assert {r["status"] for r in await earnings()} == {"approved"}
    assert {r["status_reason"] for r in await earnings()} == {""}
    assert await balances(setup, setup.publisher.id, other) == {
        "advertiser": 950 - 800,
        "network": 8 * 30,
        f"pending:{setup.publisher.id}": 5 * 70,
        f"available:{setup.publisher.id}": 0,
        f"pending:{other}": 3 * 70,
        f"available:{other}": 0,
    }
    assert await ledger.check() == []


async def test_earnings_become_available_when_the_hold_of_their_hour_ends(clean, settings):
    setup = await cpc_campaign(settings, price="0.50", payout="0.40", hold_days=7)
    await fund(setup, 10_000)
    await clicks(setup, spread(10, 5))
    assert (await cpc.run(now=NOW)).released == 0
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 200

    hold_end = at(11, days=7)
    assert (await cpc.run(now=hold_end - timedelta(seconds=1))).released == 0
    assert (await cpc.run(now=hold_end)).released == 1
    assert (await cpc.run(now=hold_end + timedelta(hours=1))).released == 0  # once
    row = (await earnings())[0]
    assert row["status"] == "released" and row["released_at"] is not None
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 0
    assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 200
    assert await LedgerTxn.count().where(LedgerTxn.idempotency_key == f"click_hour:{row['id']}:released") == 1
    assert await ledger.check() == []


async def test_a_click_is_paid_on_the_first_cpc_goal_only(clean, settings):
    setup = await cpc_campaign(
        settings,
        price="0.50",
        payout="0.40",
        goal_1_name="click2",
        goal_1_model="cpc",
        goal_1_advertiser="2.00",
        goal_1_publisher="1.00",
    )
    await fund(setup, 10_000)
    await clicks(setup, spread(10, 2))
    await cpc.run(now=NOW)
    rows = await earnings()
    assert len(rows) == 1 and rows[0]["price_minor"] == 100
    assert await ledger.check() == []


@given(
    st.lists(st.integers(1, 4), max_size=40),
    st.dictionaries(st.integers(1, 4), st.integers(0, 6)),
    st.none() | st.integers(0, 20),
    st.none() | st.integers(0, 8),
    st.none() | st.integers(0, 30),
)
def test_every_click_is_paid_or_counted_against_exactly_one_limit(order, before, cap, publisher_cap, budget):
    shares = cpc.allocate(order, before, cap=cap, publisher_cap=publisher_cap, budget_clicks=budget)
    assert sum(s.valid for s in shares.values()) == len(order)
    for publisher, share in shares.items():
        assert share.valid == share.paid + share.over_cap + share.over_budget == order.count(publisher)
        if publisher_cap is not None:
            assert share.paid <= max(publisher_cap - before.get(publisher, 0), 0)
    paid = sum(s.paid for s in shares.values())
    if budget is not None:
        assert paid <= budget
    if cap is not None:
        earlier = sum(min(n, publisher_cap) if publisher_cap is not None else n for n in before.values())
        assert paid <= max(cap - earlier, 0)
