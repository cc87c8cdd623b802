"""What an advertiser paid for: impressions (CPM) and clicks (CPC) charged, hour by hour, and
their spend per currency. Read-only queries behind the advertiser's dashboard and campaign page.

Charged = the earning hours approved or released: exactly what the ledger took from the
advertiser's balance for them (reference "impression_hour" / "click_hour"). Waiting = hours
priced but not charged yet, because the balance cannot cover them (the campaign is paused)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from piccolo.query.functions.aggregate import Sum
from piccolo.table import Table

from server.campaigns.tables import Campaign
from server.conversions.tables import Conversion, ConversionStatus
from server.core import db
from server.earnings.tables import ClickEarning, ClickEarningStatus, ImpressionEarning, ImpressionEarningStatus

# (what is bought, its table, the column of paid units, its charged statuses, its waiting status)
_KINDS: tuple[tuple[str, type[Table], Any, tuple[str, ...], str], ...] = (
    (
        "impressions",
        ImpressionEarning,
        ImpressionEarning.paid_impressions,
        (ImpressionEarningStatus.approved.value, ImpressionEarningStatus.released.value),
        ImpressionEarningStatus.waiting.value,
    ),
    (
        "clicks",
        ClickEarning,
        ClickEarning.paid_clicks,
        (ClickEarningStatus.approved.value, ClickEarningStatus.released.value),
        ClickEarningStatus.waiting.value,
    ),
)


@dataclass(frozen=True, slots=True)
class PaidFor:
    """What an advertiser bought in one campaign and currency (impressions or clicks): units paid and
    the amount charged for them, and units and amount still waiting for funds."""

    campaign_id: int
    campaign_name: str
    currency: str
    kind: str
    paid_units: int
    charged_minor: int
    waiting_units: int
    waiting_minor: int


async def paid_for(advertiser_id: int, *, campaign_id: int | None = None) -> list[PaidFor]:
    """Per campaign, currency and what was bought (impressions or clicks): units paid and charged,
    amount charged, and units and amount waiting for funds. Only the advertiser's own campaigns."""
    # (campaign id, campaign name, currency, kind) -> [paid units, charged, waiting units, waiting amount]
    found: dict[tuple[int, str, str, str], list[int]] = {}
    for kind, table, units, charged, waiting in _KINDS:
        query = table.select(
            table.campaign.id.as_alias("campaign_id"),
            table.campaign.name.as_alias("campaign_name"),
            table.currency,
            table.status,
            Sum(units, alias="units"),
            Sum(table.price_minor, alias="price"),
        ).where(table.campaign.advertiser == advertiser_id, table.status.is_in([*charged, waiting]))
        if campaign_id is not None:
            query = query.where(table.campaign == campaign_id)
        for r in await query.group_by(table.campaign.id, table.campaign.name, table.currency, table.status):
            sums = found.setdefault((r["campaign_id"], r["campaign_name"], r["currency"], kind), [0, 0, 0, 0])
            at = 2 if r["status"] == waiting else 0
            sums[at] += db.whole(r["units"])
            sums[at + 1] += db.whole(r["price"])
    rows = [PaidFor(*key, *sums) for key, sums in found.items()]
    return sorted(rows, key=lambda e: (e.campaign_name.lower(), e.campaign_id, e.currency, e.kind))


async def spend_of(advertiser_id: int) -> dict[str, int]:
    """What the advertiser's measured results cost, per currency: approved conversions and charged
    CPC and CPM hours (not what waits for funds)."""
    totals: dict[str, int] = {}
    for row in await paid_for(advertiser_id):
        totals[row.currency] = totals.get(row.currency, 0) + row.charged_minor
    rows = (
        await Conversion.select(Conversion.currency, Sum(Conversion.advertiser_amount_minor, alias="total"))
        .where(
            Conversion.campaign.is_in(Campaign.select(Campaign.id).where(Campaign.advertiser == advertiser_id)),
            Conversion.status == ConversionStatus.approved.value,
        )
        .group_by(Conversion.currency)
    )
    for r in rows:
        totals[r["currency"]] = totals.get(r["currency"], 0) + db.whole(r["total"])
    return dict(sorted(totals.items()))
