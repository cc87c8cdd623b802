"""What a campaign has spent against its budgets: one rule for the CPC job, the CPM job and the
ad decision, so a campaign with several kinds of goal cannot spend its budget once per kind.

Spend is the advertiser's price of
- conversions approved (counted at `approved_at`; pending ones are not spend yet, rejected and
  reversed ones never are),
- CPC hours (server/earnings/cpc.py) and CPM hours (server/earnings/cpm.py) charged or waiting to
  be charged (counted at their hour): a waiting hour is owed and holds its share of the budget.

The jobs price a campaign's hours under one lock per campaign (`lock`), whichever job it is,
and measure what is left against everything spent that UTC day and ever (`budget_room`), not
only what came before the hour being priced: the CPC and CPM jobs keep their own watermarks, so
one may have priced later hours than the other, and a conversion may be approved after the
hour. Whatever order they run in, the budgets are never exceeded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from piccolo.query.functions.aggregate import Sum

from server.conversions.tables import Conversion, ConversionStatus
from server.core import db
from server.earnings.tables import ClickEarning, ClickEarningStatus, ImpressionEarning, ImpressionEarningStatus

DAY = timedelta(days=1)
LOCK_NAMESPACE = 4_101  # first key of the PostgreSQL advisory locks that serialise a campaign's pricing
# Earning hours that count as spend: charged, or priced and waiting for the advertiser's funds.
CHARGED_CLICK_HOURS = (
    ClickEarningStatus.waiting.value,
    ClickEarningStatus.approved.value,
    ClickEarningStatus.released.value,
)
CHARGED_IMPRESSION_HOURS = (
    ImpressionEarningStatus.waiting.value,
    ImpressionEarningStatus.approved.value,
    ImpressionEarningStatus.released.value,
)


def _within(query: Any, column: Any, since: datetime | None, until: datetime | None) -> Any:
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


async def _total(query: Any) -> int:
    return db.whole((await query.first())["total"])


async def conversions_minor(campaign_id: int, since: datetime | None = None, until: datetime | None = None) -> int:
    """The price of the campaign's conversions approved in [since, until)."""
    return await _total(
        _within(
            Conversion.select(Sum(Conversion.advertiser_amount_minor, alias="total")).where(
                Conversion.campaign == campaign_id, Conversion.status == ConversionStatus.approved.value
            ),
            Conversion.approved_at,
            since,
            until,
        )
    )


async def spent_minor(campaign_id: int, since: datetime | None = None, until: datetime | None = None) -> int:
    """What the campaign has spent in [since, until) (either bound may be left open), in minor
    units of its currency: approved conversions at their approval, CPC and CPM hours charged or
    waiting at their hour."""
    clicks = ClickEarning.select(Sum(ClickEarning.price_minor, alias="total")).where(
        ClickEarning.campaign == campaign_id, ClickEarning.status.is_in(list(CHARGED_CLICK_HOURS))
    )
    impressions = ImpressionEarning.select(Sum(ImpressionEarning.price_minor, alias="total")).where(
        ImpressionEarning.campaign == campaign_id, ImpressionEarning.status.is_in(list(CHARGED_IMPRESSION_HOURS))
    )
    return (
        await conversions_minor(campaign_id, since, until)
        + await _total(_within(clicks, ClickEarning.hour, since, until))
        + await _total(_within(impressions, ImpressionEarning.hour, since, until))
    )


async def budget_room(
    campaign_id: int, daily_budget_minor: int | None, total_budget_minor: int | None, hour: datetime
) -> tuple[int | None, str]:
    """What the budgets still allow for an hour being priced (None: no budget), never below 0, and
    which budget binds ("the daily budget" or "the total budget", for the reason people read).
    The daily budget counts all the spend of the hour's UTC day, the total budget all spend ever."""
    rooms: list[tuple[int, str]] = []
    if daily_budget_minor is not None:
        day = hour.replace(hour=0, minute=0, second=0, microsecond=0)
        rooms.append((daily_budget_minor - await spent_minor(campaign_id, day, day + DAY), "the daily budget"))
    if total_budget_minor is not None:
        rooms.append((total_budget_minor - await spent_minor(campaign_id), "the total budget"))
    if not rooms:
        return None, ""
    room, which = min(rooms)
    return max(room, 0), which


async def lock(campaign_id: int) -> None:
    """Serialise, within the current transaction, everything that prices or charges the campaign's
    hours (CPC and CPM alike), so each reads the other's spend before adding its own. PostgreSQL:
    an advisory lock; on SQLite the transaction's BEGIN IMMEDIATE already holds the only write lock."""
    if not db.is_sqlite():
        await ClickEarning.raw("SELECT pg_advisory_xact_lock({}, {})", LOCK_NAMESPACE, campaign_id)
