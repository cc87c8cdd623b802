"""The advertiser's report over a period: spend, conversions, CPA and ROI by day, campaign,
publisher and goal, and the prepaid balance day by day (burn-down). Their own campaigns only.

- Spend: what was charged to the balance for the period's events: approved conversions and
  charged CPC and CPM hours (their price, the publisher's share and the margin together).
  Pending: conversions not approved yet and hours waiting for funds, not charged yet.
- CPA: the row's spend per approved conversion (every kind of spend, so a campaign that buys
  clicks and sales shows what a sale cost in all).
- ROI: (sales − spend) / spend, where sale amounts were reported with the conversions.
- The balance is the ledger's: its entries dated by their transaction's effective time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from server.accounts.tables import Publisher
from server.campaigns.tables import Campaign, Goal
from server.core import i18n
from server.core.i18n import _, _l
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerAccount
from server.reports import queries, rollup
from server.reports.finance import entry_hours
from server.reports.period import Period
from server.reports.report_table import Column, ReportTable, chart_number, ratio
from server.reports.rollup import Counted

SOURCES = ("traffic", "conversions", "click_earnings", "impression_earnings")
_MONEY_SOURCES = ("conversions", "click_earnings", "impression_earnings")


def _derive(row: dict[str, Any]) -> dict[str, Any]:
    for key in (
        "clicks",
        "impressions",
        "conversions",
        "pixel_conversions",
        "approved",
        "price_charged",
        "price_pending",
        "sales",
    ):
        row.setdefault(key, 0)
    spend = row["price_charged"]
    row["spend"] = spend
    row["cpa"] = ratio(spend, row["approved"])
    row["roi"] = ratio(row["sales"] - spend, spend) if row["sales"] and spend else None
    return row


_COLUMNS = [
    Column("impressions", _l("Impressions"), "count"),
    Column("clicks", _l("Clicks"), "count"),
    Column("conversions", _l("Conversions"), "count"),
    # Client-side conversions apart: the pixel fires from browsers, so these are the forgeable ones.
    Column("pixel_conversions", _l("Of which by pixel"), "count"),
    Column("approved", _l("Approved"), "count"),
    Column("currency", _l("Currency")),
    Column("spend", _l("Spend"), "money"),
    Column("price_pending", _l("Pending"), "money"),
    Column("cpa", _l("CPA"), "rate"),
    Column("sales", _l("Sales"), "money"),
    Column("roi", _l("ROI"), "percent"),
]


@dataclass
class AdvertiserReport:
    period: Period
    figures: list[dict[str, Any]]  # per currency
    tables: list[ReportTable]
    spend_chart: dict[str, Any] | None
    balance_chart: dict[str, Any] | None
    counted: Counted  # when the figures were counted: rolled up, then live


async def _by(
    advertiser_id: int, period: Period, counted: Counted, dim: str, sources: tuple[str, ...] = SOURCES
) -> dict[tuple[Any, str], dict[str, Any]]:
    rows = [
        await queries.grouped(s, "advertiser", advertiser_id, period, [dim], live_from=counted.live_from)
        for s in sources
    ]
    return queries.merge(lambda r: (r[dim], r["currency"]), *rows)


def _rows(merged: dict[tuple[Any, str], dict[str, Any]], label: Any) -> list[dict[str, Any]]:
    return sorted(
        (_derive({**r, "label": label(k[0])}) for k, r in merged.items()),
        key=lambda r: (str(r["label"]).lower(), r["currency"]),
    )


async def report(advertiser_id: int, period: Period) -> AdvertiserReport:
    counted = await rollup.counted()
    hours = [
        await queries.grouped(s, "advertiser", advertiser_id, period, ["hour"], live_from=counted.live_from)
        for s in SOURCES
    ]
    days = queries.merge(lambda r: (period.day_of(r["hour"]), r["currency"]), *hours)
    by_day = sorted(
        (_derive({**r, "label": k[0].isoformat(), "day": k[0]}) for k, r in days.items()),
        key=lambda r: (r["day"], r["currency"]),
    )

    campaigns = await _by(advertiser_id, period, counted, "campaign")
    campaign_names = await queries.names(Campaign.id, Campaign.name, {k[0] for k in campaigns})
    publishers = await _by(advertiser_id, period, counted, "publisher")
    publisher_names = await queries.names(Publisher.user, Publisher.display_name, {k[0] for k in publishers})
    goals = await _by(advertiser_id, period, counted, "goal", _MONEY_SOURCES)
    goal_names = await queries.names(Goal.id, Goal.name, {k[0] for k in goals})

    balance_rows = await _balance_by_day(advertiser_id, period)
    figures = _figures(by_day, balance_rows)
    tables = [
        ReportTable("by_day", _l("By day"), [Column("day", _l("Day"), "day"), *_COLUMNS], by_day),
        ReportTable(
            "by_campaign",
            _l("By campaign"),
            [Column("label", _l("Campaign")), *_COLUMNS],
            _rows(campaigns, lambda i: campaign_names.get(i, f"#{i}")),
        ),
        ReportTable(
            "by_publisher",
            _l("By publisher"),
            [Column("label", _l("Publisher")), *_COLUMNS],
            _rows(publishers, lambda i: f"{publisher_names.get(i) or _('Publisher')} (#{i})"),
        ),
        ReportTable(
            "by_goal",
            _l("By goal"),
            [Column("label", _l("Goal")), *_COLUMNS[2:]],
            _rows(goals, lambda i: goal_names.get(i, f"#{i}")),
        ),
        ReportTable(
            "balance",
            _l("Prepaid balance by day"),
            [
                Column("day", _l("Day"), "day"),
                Column("currency", _l("Currency")),
                Column("added", _l("Added"), "money"),
                Column("spent", _l("Charged"), "money"),
                Column("closing", _l("Balance at the end of the day"), "money"),
            ],
            balance_rows,
            empty=_l("No money moved on your balance in this period."),
        ),
    ]
    return AdvertiserReport(
        period,
        figures,
        tables,
        _spend_chart(period, by_day, figures),
        _balance_chart(period, balance_rows),
        counted,
    )


async def _balance_by_day(advertiser_id: int, period: Period) -> list[dict[str, Any]]:
    """Every local day of the period per currency the advertiser holds: money added (funding,
    refunds of charges), money charged, and the balance at the day's end."""
    accounts = await LedgerAccount.select(LedgerAccount.id, LedgerAccount.currency).where(
        LedgerAccount.owner == advertiser_id, LedgerAccount.kind == K.advertiser_balance.value
    )
    if not accounts:
        return []
    opening: dict[str, int] = {}
    for account in accounts:
        rows = await LedgerAccount.raw(
            "SELECT COALESCE(SUM(e.amount_minor), 0) AS total FROM ledger_entry e JOIN ledger_txn t ON t.id = e.txn "
            "WHERE e.account = {} AND t.effective_at < {}",
            account["id"],
            period.start_utc,
        )
        opening[account["currency"]] = opening.get(account["currency"], 0) + int(rows[0]["total"] or 0)
    moved: dict[tuple[str, date], list[int]] = {}
    for hour in await entry_hours(K.advertiser_balance, period, advertiser_id):
        sums = moved.setdefault((hour["currency"], period.day_of(hour["hour"])), [0, 0])
        sums[0] += hour["earned_minor"]
        sums[1] += hour["reversed_minor"]
    out = []
    for currency in sorted(opening):
        balance = opening[currency]
        for day in period.days():
            added, spent = moved.get((currency, day), (0, 0))
            balance += added - spent
            out.append(
                {
                    "label": day.isoformat(),
                    "day": day,
                    "currency": currency,
                    "added": added,
                    "spent": spent,
                    "closing": balance,
                }
            )
    return out


def _figures(by_day: list[dict[str, Any]], balance: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for row in by_day:
        into = totals.setdefault(row["currency"], {"currency": row["currency"]})
        for key in (
            "impressions",
            "clicks",
            "conversions",
            "pixel_conversions",
            "approved",
            "rejected",
            "reversed",
            "price_charged",
            "price_pending",
            "sales",
        ):
            into[key] = into.get(key, 0) + row.get(key, 0)
    for currency in {r["currency"] for r in balance}:
        totals.setdefault(currency, {"currency": currency})
    figures = []
    for currency, t in sorted(totals.items()):
        _derive(t)
        days = [r for r in balance if r["currency"] == currency]
        t["balance"] = days[-1]["closing"] if days else 0
        spent = sum(r["spent"] for r in days)
        # Burn-down: at the period's average daily charge, how many days the balance lasts.
        t["days_left"] = (t["balance"] * len(days) // spent) if spent and days else None
        figures.append(t)
    return figures


def _spend_chart(period: Period, by_day: list[dict[str, Any]], figures: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not any(f["spend"] or f["conversions"] for f in figures):
        return None
    main = max(figures, key=lambda f: (f["spend"], f["conversions"]))["currency"]
    rows = {r["day"]: r for r in by_day if r["currency"] == main}
    days = period.days()
    return {
        "type": "bar",
        "labels": [i18n.date_text(d) for d in days],
        "stacked": False,
        "series": [
            {
                "label": _("Conversions"),
                "axis": "count",
                "data": [rows[d]["conversions"] if d in rows else 0 for d in days],
            },
            {
                "label": _("Spend (%(currency)s)", currency=main),
                "axis": "money",
                "type": "line",
                "data": [chart_number(rows[d]["spend"], main) if d in rows else 0 for d in days],
            },
        ],
    }


def _balance_chart(period: Period, balance: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not balance:
        return None
    series = []
    for currency in sorted({r["currency"] for r in balance}):
        series.append(
            {
                "label": _("Balance (%(currency)s)", currency=currency),
                "axis": "money",
                "type": "line",
                "data": [chart_number(r["closing"], currency) for r in balance if r["currency"] == currency],
            }
        )
    labels = [i18n.date_text(d) for d in period.days()]
    return {"type": "line", "labels": labels, "stacked": False, "series": series}
