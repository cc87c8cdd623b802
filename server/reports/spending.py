"""What an advertiser paid for: impressions (CPM) and clicks (CPC) charged, hour by hour, their
spend per currency, and what their conversions brought (sales, ROI, CPA). Read-only queries behind
the advertiser's dashboard, campaign page and conversions list.

Charged = the earning hours approved or released: exactly what the ledger took from the
advertiser's balance for them (reference "impression_hour" / "click_hour"). Waiting = hours
priced but not charged yet, because the balance cannot cover them (the campaign is paused)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from piccolo.query.functions.aggregate import Count, Sum
from piccolo.table import Table

from server.campaigns.tables import Campaign
from server.conversions.tables import Conversion, ConversionStatus
from server.core import db
from server.earnings.tables import ClickEarning, ClickEarningStatus, ImpressionEarning, ImpressionEarningStatus
from server.reports.report_table import ratio

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


@dataclass(frozen=True, slots=True)
class Results:
    """What an advertiser's spend brought in one currency (all their campaigns, or one of them):
    the same definitions as their reports (server/reports/advertiser.py).

    - spend: charged to the balance: approved conversions, charged CPC and CPM hours;
    - conversions: reported and still standing (pending or approved); approved: charged ones;
    - sales: the sale amounts reported with approved conversions (any goal may send one);
      None when none of them reported one: an unknown sale, not a sale of 0;
    - CPA: spend per approved conversion; ROI: (sales − spend) ÷ spend."""

    currency: str
    spend_minor: int
    conversions: int
    approved: int
    sales_minor: int | None
    campaign_id: int | None = None
    campaign_name: str = ""

    @property
    def cpa(self) -> Decimal | None:
        return ratio(self.spend_minor, self.approved)

    @property
    def cpa_minor(self) -> int | None:
        """CPA rounded to the currency's minor unit, as pages show it."""
        cpa = self.cpa
        return None if cpa is None else int(cpa.quantize(Decimal(1), ROUND_HALF_UP))

    @property
    def roi(self) -> Decimal | None:
        if self.sales_minor is None or not self.spend_minor:
            return None
        return ratio(self.sales_minor - self.spend_minor, self.spend_minor)


# (campaign id, campaign name, currency) -> [spend, conversions, approved, sales, approved with a sale]
_Sums = dict[tuple[int, str, str], list[int]]


async def _conversion_sums(advertiser_id: int, campaign_id: int | None) -> _Sums:
    query = Conversion.select(
        Conversion.campaign.id.as_alias("campaign_id"),
        Conversion.campaign.name.as_alias("campaign_name"),
        Conversion.currency,
        Conversion.status,
        Count(alias="conversions"),
        Sum(Conversion.advertiser_amount_minor, alias="price"),
        Sum(Conversion.sale_amount_minor, alias="sales"),
        Count(Conversion.sale_amount_minor, alias="with_sale"),
    ).where(
        Conversion.campaign.advertiser == advertiser_id,
        Conversion.status.is_in([ConversionStatus.pending.value, ConversionStatus.approved.value]),
    )
    if campaign_id is not None:
        query = query.where(Conversion.campaign == campaign_id)
    sums: _Sums = {}
    for r in await query.group_by(
        Conversion.campaign.id, Conversion.campaign.name, Conversion.currency, Conversion.status
    ):
        row = sums.setdefault((r["campaign_id"], r["campaign_name"], r["currency"]), [0, 0, 0, 0, 0])
        row[1] += r["conversions"]
        if r["status"] == ConversionStatus.approved.value:
            row[0] += db.whole(r["price"])
            row[2] += r["conversions"]
            row[3] += db.whole(r["sales"])
            row[4] += r["with_sale"]
    return sums


def _results(key: tuple[int, str, str], sums: list[int], *, per_campaign: bool) -> Results:
    campaign, name, currency = key
    spend, conversions, approved, sales, with_sale = sums
    return Results(
        currency=currency,
        spend_minor=spend,
        conversions=conversions,
        approved=approved,
        sales_minor=sales if with_sale else None,
        campaign_id=campaign if per_campaign else None,
        campaign_name=name if per_campaign else "",
    )


async def results_of(
    advertiser_id: int, *, campaign_id: int | None = None, per_campaign: bool = False
) -> list[Results]:
    """The advertiser's results per currency (or per campaign and currency), over everything so far:
    spend, conversions, sales, CPA and ROI. Only their own campaigns."""
    sums = await _conversion_sums(advertiser_id, campaign_id)
    for row in await paid_for(advertiser_id, campaign_id=campaign_id):
        sums.setdefault((row.campaign_id, row.campaign_name, row.currency), [0, 0, 0, 0, 0])[0] += row.charged_minor
    if not per_campaign:
        totals: _Sums = {}
        for (_, _, currency), found in sums.items():
            total = totals.setdefault((0, "", currency), [0, 0, 0, 0, 0])
            for i, value in enumerate(found):
                total[i] += value
        sums = totals
    rows = [_results(key, found, per_campaign=per_campaign) for key, found in sums.items()]
    return sorted(rows, key=lambda r: (r.campaign_name.lower(), r.campaign_id or 0, r.currency))


class _Listed(Protocol):
    currency: str
    status: str
    advertiser_amount_minor: int
    sale_amount_minor: int | None


def results_of_listed(conversions: Iterable[_Listed]) -> list[Results]:
    """The same figures over a list of conversions (the conversions page as filtered), per currency:
    their spend is the price of the approved ones."""
    totals: dict[tuple[int, str, str], list[int]] = {}
    for c in conversions:
        if c.status not in (ConversionStatus.pending.value, ConversionStatus.approved.value):
            continue
        row = totals.setdefault((0, "", c.currency), [0, 0, 0, 0, 0])
        row[1] += 1
        if c.status == ConversionStatus.approved.value:
            row[0] += c.advertiser_amount_minor
            row[2] += 1
            if c.sale_amount_minor is not None:
                row[3] += c.sale_amount_minor
                row[4] += 1
    return sorted((_results(key, found, per_campaign=False) for key, found in totals.items()), key=lambda r: r.currency)
