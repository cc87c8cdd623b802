"""The publisher's report over a period: impressions, clicks, conversions, conversion rate, EPC
and earnings, by day, campaign, sub-ID, slot and country, and invalid traffic by reason.

Read from the hourly rollups and the CPC/CPM earning hours, never from raw events. Earnings are
the publisher's share only (never the advertiser's price or the network's margin):
- pending: conversions not yet approved or in their hold, and CPC/CPM hours waiting for the
  advertiser's funds or in their hold;
- confirmed: released to the publisher (available, or paid since).
CPC and CPM earnings are counted per campaign and hour, so the sub-ID, slot and country tables
show conversion earnings only; the day and campaign tables show all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from piccolo.query.functions.aggregate import Sum

from server.ads.tables import VIEW_REASON_LABELS, AdSlot, ViewReason
from server.campaigns.tables import Campaign
from server.core import i18n
from server.core.i18n import _, _l
from server.payouts.tables import LineStatus, PayoutLine
from server.reports import queries, rollup
from server.reports.period import Period
from server.reports.report_table import Column, ReportTable, chart_number, ratio
from server.reports.rollup import Counted
from server.tracking.classify import REASON_LABELS, Reason

NO_SLOT = _l("Links (no ad slot)")
NO_SUB = _l("(none)")
UNKNOWN_COUNTRY = _l("(unknown)")
_EARNING_SOURCES = ("click_earnings", "impression_earnings")


def reason_label(reason: str) -> str:
    """Why traffic was invalid, in words: a click's reason, else a view's, else the code itself."""
    if reason in Reason.__members__.values():
        return str(REASON_LABELS[Reason(reason)])
    if reason in ViewReason.__members__.values():
        return str(VIEW_REASON_LABELS[ViewReason(reason)])
    return reason.replace("_", " ")


def _earnings(row: dict[str, Any]) -> int:
    return row.get("payout_pending", 0) + row.get("payout_confirmed", 0)


def _derive(row: dict[str, Any]) -> dict[str, Any]:
    """The rates of one row: conversion rate and earnings per valid click."""
    row.setdefault("clicks", 0)
    row.setdefault("impressions", 0)
    row.setdefault("conversions", 0)
    row["earnings"] = _earnings(row)
    row["conversion_rate"] = ratio(row["conversions"], row["clicks"])
    row["epc"] = ratio(row["earnings"], row["clicks"])
    return row


_TRAFFIC_COLUMNS = [
    Column("impressions", _l("Impressions"), "count"),
    Column("clicks", _l("Clicks"), "count"),
    Column("conversions", _l("Conversions"), "count"),
    Column("conversion_rate", _l("Conversion rate"), "percent"),
]
_MONEY_COLUMNS = [
    Column("currency", _l("Currency")),
    Column("payout_pending", _l("Pending"), "money"),
    Column("payout_confirmed", _l("Confirmed"), "money"),
    Column("earnings", _l("Earnings"), "money"),
    Column("epc", _l("EPC"), "rate"),
]
_CONVERSION_MONEY = [
    Column("currency", _l("Currency")),
    Column("payout_pending", _l("Pending (conversions)"), "money"),
    Column("payout_confirmed", _l("Confirmed (conversions)"), "money"),
    Column("earnings", _l("Conversion earnings"), "money"),
    Column("epc", _l("EPC (conversions)"), "rate"),
]


@dataclass
class PublisherReport:
    period: Period
    figures: list[dict[str, Any]]  # per currency: the period's totals
    tables: list[ReportTable]
    chart: dict[str, Any] | None  # earnings, clicks and conversions by day, in the main currency
    counted: Counted  # when the figures were counted: rolled up, then live
    paid: dict[str, int] = field(default_factory=dict)  # paid out in the period, per currency


def _by_label(row: dict[str, Any]) -> tuple[str, str]:
    return row["label"].lower(), row["currency"]


async def report(publisher_id: int, period: Period) -> PublisherReport:
    counted = await rollup.counted()

    async def grouped(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return await queries.grouped(*args, live_from=counted.live_from, **kwargs)

    # By day (UTC hours, counted into the reader's local days), all sources.
    hourly = [
        await grouped(s, "publisher", publisher_id, period, ["hour"])
        for s in ("traffic", "conversions", *_EARNING_SOURCES)
    ]
    days = queries.merge(lambda r: (period.day_of(r["hour"]), r["currency"]), *hourly)
    by_day = sorted(
        (_derive({**r, "label": key[0].isoformat(), "day": key[0]}) for key, r in days.items()),
        key=lambda r: (r["day"], r["currency"]),
    )

    campaigns = queries.merge(
        lambda r: (r["campaign"], r["currency"]),
        *[
            await grouped(s, "publisher", publisher_id, period, ["campaign"])
            for s in ("traffic", "conversions", *_EARNING_SOURCES)
        ],
    )
    names = await queries.names(Campaign.id, Campaign.name, {k[0] for k in campaigns})
    by_campaign = sorted(
        (_derive({**r, "label": names.get(k[0], f"#{k[0]}")}) for k, r in campaigns.items()), key=_by_label
    )

    subs = queries.merge(
        lambda r: (r["sub1"], r["currency"]),
        *[await grouped(s, "publisher", publisher_id, period, ["sub1"]) for s in ("traffic", "conversions")],
    )
    by_sub = sorted((_derive({**r, "label": k[0] or str(NO_SUB)}) for k, r in subs.items()), key=_by_label)

    slots = queries.merge(
        lambda r: (r["slot"], r["currency"]),
        *[await grouped(s, "publisher", publisher_id, period, ["slot"]) for s in ("traffic", "conversions")],
    )
    slot_names = await queries.names(AdSlot.id, AdSlot.name, {k[0] for k in slots if k[0]})
    by_slot = sorted(
        (_derive({**r, "label": slot_names.get(k[0], f"#{k[0]}") if k[0] else str(NO_SLOT)}) for k, r in slots.items()),
        key=_by_label,
    )

    countries = queries.merge(
        lambda r: (r["country"], r["currency"]),
        *[await grouped(s, "publisher", publisher_id, period, ["country"]) for s in ("traffic", "conversions")],
    )
    by_country = sorted(
        (_derive({**r, "label": k[0] or str(UNKNOWN_COUNTRY)}) for k, r in countries.items()),
        key=lambda r: (-r["clicks"], r["label"], r["currency"]),
    )

    invalid = queries.merge(
        lambda r: r["reason"],
        await grouped("traffic", "publisher", publisher_id, period, ["reason"], only_invalid=True),
    )
    all_clicks = sum(r["clicks"] + r["invalid_clicks"] for r in hourly[0])
    by_reason = sorted(
        (
            {
                "label": reason_label(reason),
                "reason": reason,
                "invalid_clicks": r.get("invalid_clicks", 0),
                "invalid_impressions": r.get("invalid_impressions", 0),
                "share": ratio(r.get("invalid_clicks", 0), all_clicks),
            }
            for reason, r in invalid.items()
        ),
        key=lambda r: (-r["invalid_clicks"], -r["invalid_impressions"], r["label"]),
    )

    figures = _figures(by_day)
    paid = await _paid(publisher_id, period)
    for f in figures:
        f["paid"] = paid.get(f["currency"], 0)
    tables = [
        ReportTable(
            "by_day", _l("By day"), [Column("day", _l("Day"), "day"), *_TRAFFIC_COLUMNS, *_MONEY_COLUMNS], by_day
        ),
        ReportTable(
            "by_campaign",
            _l("By campaign"),
            [Column("label", _l("Campaign")), *_TRAFFIC_COLUMNS, *_MONEY_COLUMNS],
            by_campaign,
        ),
        ReportTable(
            "by_sub_id",
            _l("By sub-ID (sub1)"),
            [Column("label", _l("Sub-ID")), *_TRAFFIC_COLUMNS, *_CONVERSION_MONEY],
            by_sub,
        ),
        ReportTable(
            "by_slot", _l("By ad slot"), [Column("label", _l("Slot")), *_TRAFFIC_COLUMNS, *_CONVERSION_MONEY], by_slot
        ),
        ReportTable(
            "by_country",
            _l("By country"),
            [Column("label", _l("Country")), *_TRAFFIC_COLUMNS, *_CONVERSION_MONEY],
            by_country,
        ),
        ReportTable(
            "invalid_traffic",
            _l("Invalid traffic by reason"),
            [
                Column("label", _l("Reason")),
                Column("invalid_clicks", _l("Invalid clicks"), "count"),
                Column("invalid_impressions", _l("Invalid impressions"), "count"),
                Column("share", _l("Share of all clicks"), "percent"),
            ],
            by_reason,
            empty=_l("No invalid traffic in this period."),
        ),
    ]
    return PublisherReport(
        period=period,
        figures=figures,
        tables=tables,
        chart=_chart(period, by_day, figures),
        paid=paid,
        counted=counted,
    )


def _figures(by_day: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for row in by_day:
        into = totals.setdefault(row["currency"], {"currency": row["currency"]})
        for key in (
            "impressions",
            "clicks",
            "invalid_clicks",
            "invalid_impressions",
            "conversions",
            "approved",
            "rejected",
            "reversed",
            "payout_pending",
            "payout_confirmed",
        ):
            into[key] = into.get(key, 0) + row.get(key, 0)
    return [_derive(t) for _, t in sorted(totals.items())]


async def _paid(publisher_id: int, period: Period) -> dict[str, int]:
    """Payouts Stripe confirmed to the publisher in the period, per currency."""
    rows = (
        await PayoutLine.select(PayoutLine.currency, Sum(PayoutLine.amount_minor, alias="total"))
        .where(
            PayoutLine.publisher == publisher_id,
            PayoutLine.status == LineStatus.paid.value,
            PayoutLine.updated_at >= period.start_utc,
            PayoutLine.updated_at < period.end_utc,
        )
        .group_by(PayoutLine.currency)
    )
    return {r["currency"]: int(r["total"] or 0) for r in rows}


def _chart(period: Period, by_day: list[dict[str, Any]], figures: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not figures:
        return None
    main = max(figures, key=lambda f: (f["earnings"], f["clicks"]))["currency"]
    rows: dict[date, dict[str, Any]] = {r["day"]: r for r in by_day if r["currency"] == main}
    days = period.days()
    return {
        "type": "bar",
        "labels": [i18n.date_text(d) for d in days],
        "stacked": False,
        "series": [
            {"label": _("Clicks"), "axis": "count", "data": [rows.get(d, {}).get("clicks", 0) for d in days]},
            {"label": _("Conversions"), "axis": "count", "data": [rows.get(d, {}).get("conversions", 0) for d in days]},
            {
                "label": _("Earnings (%(currency)s)", currency=main),
                "axis": "money",
                "data": [chart_number(rows[d]["earnings"], main) if d in rows else 0 for d in days],
            },
        ],
    }
