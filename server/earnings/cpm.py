"""CPM earnings: valid impressions of CPM goals become ledgered earnings, per publisher × campaign ×
goal × UTC hour, within the campaign's budgets. Run by the worker (workers/jobs/ads.py), in the
pattern of CPC hours (server/earnings/cpc.py).

What is paid
- Only `valid` impressions (server/ads/tables.py: ViewReason) count: seen (half the ad on screen
  for a second), once per offer, not a bot, not over the visitor's frequency cap, not a flood.
- An impression pays on its campaign's *first* CPM goal (lowest position); amounts are the goal's
  at the time the hour is priced. Only closed hours are priced, once the hour ended at least
  SETTLE ago (views still in a server's buffer land first); an impression stored after its hour
  was priced is never paid. A campaign's hours are priced in order, never twice: its latest
  priced hour is the watermark, and (campaign, goal, hour, publisher) is unique at the database.
- Budgets: of the hour's valid impressions, taken in (viewed_at, id) order whoever brought them,
  the first ones are paid while the daily and total budgets still allow them at the unit price
  (server/earnings/spend.py, the one rule shared with CPC hours and the ad decision: approved
  conversions, CPC and CPM hours charged or waiting, over the hour's whole UTC day and ever); the
  rest are over budget, with the reason said on the row.

Rounding: every cent conserved, none lost to fractions
- A price per thousand makes fractions of a cent per impression. They are not rounded away hour
  by hour: for each (campaign, goal, publisher), the advertiser has been charged, over all priced
  hours, exactly floor(paid impressions × price / 1000), and the publisher credited floor(paid
  impressions × payout / 1000); each hour's row is the increase of those totals. (Ten hours of one
  impression at 2.50 per thousand charge 2 cents, not 0.) The network's margin is the row's price
  less its payout. Should an hour's payout increase exceed its price increase (it can, by a cent,
  where the two floors step at different impressions), the payout is held to the price and the
  cent follows in a later hour: a publisher's total never trails the exact floor by more than a
  cent, and no row ever has a negative margin.

Money
- A priced hour is charged in one ledger posting per row (`approve_earning`: advertiser_balance
  −price, publisher_pending +payout, network_revenue +margin), reference ("impression_hour", row
  id), key `impression_hour:{id}:approved`; a whole hour or nothing. If the advertiser's balance
  cannot cover it, its rows wait with a reason, later hours wait behind them, the campaign is
  paused, and the next run after funding charges them in order. Holds end `hold_days` after the
  hour ended (`release_earning`, key `impression_hour:{id}:released`).

Running twice, or in two workers at once: as CPC hours. Pricing takes the campaign's pricing
lock (`spend.lock`, the same as the CPC job's, so the two never price against stale spend;
SQLite's BEGIN IMMEDIATE serialises writers) and re-reads the watermark; charging and releasing
are conditional updates on the status they leave; the ledger's idempotency keys replay rather
than post again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from piccolo.query.functions.aggregate import Count, Sum

from server.ads.tables import Impression, ViewReason
from server.campaigns.tables import PayoutModel
from server.core import db, money
from server.earnings import cpc, spend
from server.earnings.charging import (  # noqa: F401 - WAITING_*: this module's words too
    HOUR,
    WAITING_BEHIND,
    WAITING_FOR_FUNDS,
    EarningHours,
    Outcome,
    first_goal_terms,
)
from server.earnings.tables import ImpressionEarning, ImpressionEarningStatus

log = logging.getLogger("affnet.cpm")

PER = 1000  # a CPM price is per thousand impressions
REFERENCE = "impression_hour"
HOURS = EarningHours(
    ImpressionEarning,
    ImpressionEarningStatus,
    reference=REFERENCE,
    kind="CPM",
    event_time=Impression.viewed_at,
    event_valid=Impression.reason == ViewReason.valid.value,
    log=log,
)


def increments(
    before: tuple[int, int, int], paid: int, advertiser_amount: int, publisher_amount: int
) -> tuple[int, int, int]:
    """(price, payout, margin) of `paid` more impressions, given what this publisher's earlier hours
    of the goal hold: (paid impressions, price, payout). The cumulative rule of the module docstring."""
    if not 0 <= publisher_amount <= advertiser_amount or paid < 0:
        raise ValueError("0 <= payout amount <= price amount, and paid >= 0")
    impressions, charged, credited = before
    total = impressions + paid
    price = total * advertiser_amount // PER - charged
    payout = min(total * publisher_amount // PER - credited, price)
    return price, payout, price - payout


async def _budget_impressions(terms: dict[str, Any], hour: datetime) -> tuple[int | None, int | None, str]:
    """(budget room in minor units, impressions it pays for at the unit price, the binding budget's name)."""
    room, which = await spend.budget_room(
        terms["campaign_id"], terms["daily_budget_minor"], terms["total_budget_minor"], hour
    )
    if room is None:
        return None, None, ""
    return room, room * PER // terms["advertiser_amount"], which


async def _before(terms: dict[str, Any]) -> dict[int, tuple[int, int, int]]:
    """Per publisher, what earlier priced hours of the goal hold: (paid impressions, price, payout)."""
    rows = (
        await ImpressionEarning.select(
            ImpressionEarning.publisher,
            Sum(ImpressionEarning.paid_impressions, alias="paid"),
            Sum(ImpressionEarning.price_minor, alias="price"),
            Sum(ImpressionEarning.payout_minor, alias="payout"),
        )
        .where(ImpressionEarning.campaign == terms["campaign_id"], ImpressionEarning.goal == terms["goal_id"])
        .group_by(ImpressionEarning.publisher)
    )
    return {r["publisher"]: (db.whole(r["paid"]), db.whole(r["price"]), db.whole(r["payout"])) for r in rows}


async def _valid_by_publisher(campaign_id: int, start: datetime, end: datetime) -> dict[int, int]:
    rows = (
        await Impression.select(Impression.publisher, Count(Impression.id, alias="views"))
        .where(
            Impression.campaign == campaign_id,
            Impression.reason == ViewReason.valid.value,
            Impression.viewed_at >= start,
            Impression.viewed_at < end,
        )
        .group_by(Impression.publisher)
    )
    return {r["publisher"]: r["views"] for r in rows}


@dataclass
class Row:
    publisher: int
    valid: int
    paid: int
    price: int
    payout: int
    margin: int


async def price_hour(terms: dict[str, Any], hour: datetime) -> tuple[list[Row], str]:
    """One row per publisher with valid impressions in the closed hour, and the binding budget's name."""
    campaign_id, end = terms["campaign_id"], hour + HOUR
    in_hour = await _valid_by_publisher(campaign_id, hour, end)
    room, budget_impressions, budget_name = await _budget_impressions(terms, hour)
    if budget_impressions is None or budget_impressions >= sum(in_hour.values()):
        paid = dict(in_hour)
    else:
        ordered = (
            await Impression.select(Impression.publisher)
            .where(
                Impression.campaign == campaign_id,
                Impression.reason == ViewReason.valid.value,
                Impression.viewed_at >= hour,
                Impression.viewed_at < end,
            )
            .order_by(Impression.viewed_at, Impression.id)
            .output(as_list=True)
        )
        shares = cpc.allocate(ordered, {}, cap=None, publisher_cap=None, budget_clicks=budget_impressions)
        paid = {p: s.paid for p, s in shares.items()}
    before = await _before(terms)
    order = sorted(in_hour)

    def build() -> list[Row]:
        rows = []
        for publisher in order:
            price, payout, margin = increments(
                before.get(publisher, (0, 0, 0)),
                paid.get(publisher, 0),
                terms["advertiser_amount"],
                terms["publisher_amount"],
            )
            rows.append(Row(publisher, in_hour[publisher], paid.get(publisher, 0), price, payout, margin))
        return rows

    rows = build()
    # Rounding up carried fractions can make the hour cost a few cents more than paid × price / 1000:
    # within the budget, the latest paid impressions give way until it fits.
    while room is not None and sum(r.price for r in rows) > room:
        last = max((p for p in order if paid.get(p, 0)), key=lambda p: (paid[p], p))
        paid[last] -= 1
        rows = build()
    return rows, budget_name


# --- the per-campaign steps (server/earnings/charging.py) --------------------------------


def describe(row: Row, budget_name: str) -> str:
    unpaid = row.valid - row.paid
    return f"{unpaid} beyond what {budget_name or 'the budget'} still allowed" if unpaid else ""


async def build_rows(terms: dict[str, Any], hour: datetime, now: datetime, blocked: bool) -> list[ImpressionEarning]:
    """The rows of one closed hour of a campaign: one per publisher with valid impressions."""
    money.flat_split(terms["advertiser_amount"], terms["publisher_amount"])  # refuses payout > price
    rows, budget_name = await price_hour(terms, hour)
    return [
        ImpressionEarning(
            publisher=r.publisher,
            campaign=terms["campaign_id"],
            goal=terms["goal_id"],
            hour=hour,
            valid_impressions=r.valid,
            paid_impressions=r.paid,
            over_budget_impressions=r.valid - r.paid,
            currency=terms["currency"],
            price_minor=r.price,
            payout_minor=r.payout,
            margin_minor=r.margin,
            unpaid_reason=describe(r, budget_name),
            # A row whose impressions cost less than a cent so far is paid too: its fractions are
            # carried in the totals and charged by a later hour (see the module's docstring).
            status=(ImpressionEarningStatus.waiting if r.price else ImpressionEarningStatus.unpaid).value,
            status_reason=WAITING_BEHIND if r.price and blocked else "",
            hold_until=hour + HOUR + timedelta(days=terms["hold_days"]),
            created_at=now,
        )
        for r in rows
    ]


async def run(now: datetime | None = None) -> Outcome:
    """Retry waiting hours, price and charge every newly closed hour, release earnings past their hold."""
    terms = await first_goal_terms(
        PayoutModel.cpm.value, ("currency", "hold_days", "daily_budget_minor", "total_budget_minor")
    )
    return await HOURS.run(terms, build_rows, now)
