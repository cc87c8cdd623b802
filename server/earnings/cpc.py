"""CPC earnings: valid clicks of CPC goals become ledgered earnings, per publisher × campaign ×
goal × UTC hour, within the campaign's caps and budgets. Run by the worker (workers/jobs/earnings.py).

What is paid
- Only `valid` clicks (server/tracking/classify.py) count. The redirect already refuses clicks over
  caps and budgets from in-process counters, but several processes each count their own share:
  this job, working from the stored clicks, is the truth for what is billed.
- A click pays on its campaign's *first* CPC goal (lowest position), as the redirect prices it;
  a second CPC goal never bills the same click again. Amounts are the goal's at the time the
  hour is priced (usually minutes after it closed): price = paid clicks × advertiser amount,
  payout = paid clicks × publisher amount, margin = price − payout (integer cents, I12/I13).
- Hours are UTC; a day is a UTC day (as the redirect counts). Only closed hours are priced, once
  the hour ended at least SETTLE ago, so clicks still in a server's write buffer (flushed every
  half second) land first. A click stored after its hour was priced is never paid.
- Each priced hour gets one row per publisher with valid clicks, even when nothing is paid, with
  how many clicks were paid, how many were over a cap or the budget, and why (`unpaid_reason`).
  A campaign's hours are priced in order, never twice: its latest priced hour is the watermark
  (whatever the goal), and (campaign, goal, hour, publisher) is unique at the database.

Caps, then budgets, in click order
- The valid clicks of a day are taken in (clicked_at, id) order. A publisher's clicks beyond
  cap_publisher_clicks_daily that day are over cap; of the rest, those beyond cap_clicks_daily
  for the campaign that day are over cap. Clicks over cap are never paid.
- Of the clicks within caps in the hour, the first N are paid, N being what the budgets still
  allow at the unit price: min(daily_budget − spent today, total_budget − spent ever) // price.
  The rest are over budget. So the budget goes to earlier hours first and, within an hour, to
  the earliest clicks whoever brought them: deterministic, and the same in every worker.
- Spend is the campaign's one rule (server/earnings/spend.py): approved conversions, and CPC and
  CPM hours charged or waiting to be charged. A waiting hour holds its share of the budget: it is
  owed, and is charged once funds arrive. What is left is measured against the whole UTC day's
  spend and all spend ever, whichever job priced it, so CPC and CPM goals share one budget.

Money (the steps CPC and CPM hours share: server/earnings/charging.py)
- A priced hour is charged to the advertiser in one ledger posting per row (`approve_earning`:
  advertiser_balance −price, publisher_pending +payout, network_revenue +margin), reference
  ("click_hour", row id), idempotency key `click_hour:{id}:approved`. An hour is charged whole
  or not at all: when the advertiser's balance cannot cover all its rows, nothing is posted (the
  balance never goes negative, I4), the rows wait with a reason (`status_reason`), the campaign is paused
  (`pause_for_balance`), and later hours of that campaign wait behind it. Each run retries the
  waiting hours in order before pricing new ones, so funding the balance pays them on the next
  run; the advertiser resumes the campaign themselves.
- The hold of an hour ends `hold_days` (the campaign's, when priced) after the hour ended; then
  the payout moves publisher_pending → publisher_available (`release_earning`, key
  `click_hour:{id}:released`), in the same job.

Running twice, or in two workers at once
- Every write is one database transaction whose first step claims its work: pricing takes the
  campaign's pricing lock (`spend.lock`, shared with the CPM job; SQLite's BEGIN IMMEDIATE already
  serialises writers) and re-reads the watermark; charging a waiting row and releasing an approved one are
  conditional updates on the status they leave. The loser finds nothing to do, and the ledger's
  idempotency keys replay rather than post again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from piccolo.query.functions.aggregate import Count

from server.campaigns.tables import PayoutModel
from server.core import money
from server.earnings import spend
from server.earnings.charging import (  # noqa: F401 - WAITING_*, Outcome: this module's words too
    HOUR,
    WAITING_BEHIND,
    WAITING_FOR_FUNDS,
    EarningHours,
    Outcome,
    first_goal_terms,
)
from server.earnings.tables import ClickEarning, ClickEarningStatus
from server.tracking.classify import Reason
from server.tracking.tables import Click

log = logging.getLogger("affnet.cpc")

HOURS = EarningHours(
    ClickEarning,
    ClickEarningStatus,
    reference="click_hour",
    kind="CPC",
    event_time=Click.clicked_at,
    event_valid=Click.reason == Reason.valid.value,
    log=log,
)


# --- pricing an hour -----------------------------------------------------------------------------


@dataclass
class Share:
    """One publisher's clicks in the hour being priced."""

    valid: int = 0
    paid: int = 0
    over_publisher_cap: int = 0
    over_campaign_cap: int = 0
    over_budget: int = 0

    @property
    def over_cap(self) -> int:
        return self.over_publisher_cap + self.over_campaign_cap


def allocate(
    clicks_in_order: Iterable[int],
    before: dict[int, int],
    *,
    cap: int | None,
    publisher_cap: int | None,
    budget_clicks: int | None,
) -> dict[int, Share]:
    """Who is paid for which click of the hour. `clicks_in_order` are the publishers of the hour's
    valid clicks in (clicked_at, id) order; `before` each publisher's valid clicks earlier that day."""
    used_by = {p: min(n, publisher_cap) if publisher_cap is not None else n for p, n in before.items()}
    campaign_used = sum(used_by.values())
    if cap is not None:
        campaign_used = min(campaign_used, cap)
    shares: dict[int, Share] = defaultdict(Share)
    paid = 0
    for publisher in clicks_in_order:
        share = shares[publisher]
        share.valid += 1
        if publisher_cap is not None and used_by.get(publisher, 0) >= publisher_cap:
            share.over_publisher_cap += 1
            continue
        used_by[publisher] = used_by.get(publisher, 0) + 1
        if cap is not None and campaign_used >= cap:
            share.over_campaign_cap += 1
            continue
        campaign_used += 1
        if budget_clicks is not None and paid >= budget_clicks:
            share.over_budget += 1
            continue
        paid += 1
        share.paid += 1
    return dict(shares)


async def _clicks_by_publisher(campaign_id: int, start: datetime, end: datetime) -> dict[int, int]:
    rows = (
        await Click.select(Click.publisher, Count(Click.id, alias="clicks"))
        .where(
            Click.campaign == campaign_id,
            Click.reason == Reason.valid.value,
            Click.clicked_at >= start,
            Click.clicked_at < end,
        )
        .group_by(Click.publisher)
    )
    return {r["publisher"]: r["clicks"] for r in rows}


async def price_hour(terms: dict[str, Any], hour: datetime) -> tuple[dict[int, Share], str]:
    """The shares of one closed hour of one campaign, from the stored clicks and spend, and the
    name of the budget that limits it."""
    campaign_id, end = terms["campaign_id"], hour + HOUR
    in_hour = await _clicks_by_publisher(campaign_id, hour, end)
    room, budget_name = await spend.budget_room(
        campaign_id, terms["daily_budget_minor"], terms["total_budget_minor"], hour
    )
    budget_clicks = None if room is None else room // terms["advertiser_amount"]
    cap, publisher_cap = terms["cap_clicks_daily"], terms["cap_publisher_clicks_daily"]
    if cap is None and publisher_cap is None and (budget_clicks is None or budget_clicks >= sum(in_hour.values())):
        # Nothing limits this hour: every valid click is paid, no need to read them one by one.
        return {p: Share(valid=n, paid=n) for p, n in in_hour.items()}, budget_name
    limited = cap is not None or publisher_cap is not None
    before = await _clicks_by_publisher(campaign_id, hour.replace(hour=0), hour) if limited else {}
    ordered = (
        await Click.select(Click.publisher)
        .where(
            Click.campaign == campaign_id,
            Click.reason == Reason.valid.value,
            Click.clicked_at >= hour,
            Click.clicked_at < end,
        )
        .order_by(Click.clicked_at, Click.id)
        .output(as_list=True)
    )
    shares = allocate(ordered, before, cap=cap, publisher_cap=publisher_cap, budget_clicks=budget_clicks)
    return shares, budget_name


def describe(share: Share, terms: dict[str, Any], budget_name: str) -> str:
    """Why clicks of this row went unpaid, for people (the publisher sees it)."""
    parts = []
    if share.over_publisher_cap:
        parts.append(
            f"{share.over_publisher_cap} over the daily cap of {terms['cap_publisher_clicks_daily']} "
            "clicks per publisher"
        )
    if share.over_campaign_cap:
        parts.append(f"{share.over_campaign_cap} over the campaign's daily cap of {terms['cap_clicks_daily']} clicks")
    if share.over_budget:
        parts.append(f"{share.over_budget} beyond what {budget_name or 'the budget'} still allowed")
    return "; ".join(parts)


# --- the per-campaign steps (server/earnings/charging.py) --------------------------------


async def build_rows(terms: dict[str, Any], hour: datetime, now: datetime, blocked: bool) -> list[ClickEarning]:
    """The rows of one closed hour of a campaign: one per publisher with valid clicks."""
    unit_price, unit_payout, _ = money.flat_split(terms["advertiser_amount"], terms["publisher_amount"])
    shares, budget_name = await price_hour(terms, hour)
    rows = []
    for publisher, share in sorted(shares.items()):
        price, payout = share.paid * unit_price, share.paid * unit_payout
        rows.append(
            ClickEarning(
                publisher=publisher,
                campaign=terms["campaign_id"],
                goal=terms["goal_id"],
                hour=hour,
                valid_clicks=share.valid,
                paid_clicks=share.paid,
                over_cap_clicks=share.over_cap,
                over_budget_clicks=share.over_budget,
                currency=terms["currency"],
                price_minor=price,
                payout_minor=payout,
                margin_minor=price - payout,
                unpaid_reason=describe(share, terms, budget_name),
                status=(ClickEarningStatus.waiting if share.paid else ClickEarningStatus.unpaid).value,
                status_reason=WAITING_BEHIND if share.paid and blocked else "",
                hold_until=hour + HOUR + timedelta(days=terms["hold_days"]),
                created_at=now,
            )
        )
    return rows


async def run(now: datetime | None = None) -> Outcome:
    """Retry waiting hours, price and charge every newly closed hour, release earnings past their hold."""
    terms = await first_goal_terms(
        PayoutModel.cpc.value,
        (
            "currency",
            "hold_days",
            "daily_budget_minor",
            "total_budget_minor",
            "cap_clicks_daily",
            "cap_publisher_clicks_daily",
        ),
    )
    return await HOURS.run(terms, build_rows, now)
