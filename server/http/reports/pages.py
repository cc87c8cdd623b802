"""Each role's home page. Panels fill in as campaigns, conversions and payouts arrive; publishers
also get their conversions page and their earnings as JSON (GET /api/v1/publisher/earnings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Router, get
from litestar.response import Response, Template

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import PublisherStatus, Role
from server.billing import service as billing
from server.campaigns import service as campaigns
from server.core import money
from server.core.errors import Invalid
from server.http.campaigns.marketplace_pages import click_table
from server.http.pages import render, render_error
from server.http.reports.common import (
    PERIOD_REFUSALS,
    PeriodFrom,
    PeriodTo,
    PeriodZone,
    period_of,
    report_csv,
    report_page,
)
from server.http.web import current_user, requires_role
from server.payouts import history as payout_history
from server.reports import advertiser as advertiser_reports
from server.reports import earnings, spending, traffic
from server.reports import publisher as publisher_reports
from server.tracking import service as tracking


def _publisher_id(request: Request) -> int:
    return current_user(request).id  # type: ignore[union-attr]  # the guard admitted a publisher


class PublisherPages(Controller):
    path = "/publisher"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def dashboard(self, request: Request) -> Template:
        user_id = _publisher_id(request)
        profile = await accounts.publisher_profile(user_id)
        stats = await traffic.click_stats(user_id)  # the last 30 days, from the rollups
        return render(
            "publisher/dashboard.html",
            profile=profile,
            can_join=profile["status"] == PublisherStatus.approved.value,
            clicks=tracking.click_totals(stats),
            table=click_table(stats),
            conversions=await earnings.conversion_counts(user_id),
            balances=await earnings.money_of(user_id),
            click_earnings=await earnings.click_earnings_of(user_id),
            impression_earnings=await earnings.impression_earnings_of(user_id),
            paid=await payout_history.paid_to_you(user_id),  # lifetime, and the last payout, by currency
            money=money,
        )

    @get("/conversions")
    async def conversions(self, request: Request) -> Template:
        user_id = _publisher_id(request)
        context = {
            "statuses": earnings.STATUSES,
            "money": money,
            "limit": earnings.LIST_LIMIT,
            "counts": await earnings.conversion_counts(user_id),
        }
        try:
            status = earnings.parse_status(request.query_params)
        except Invalid as exc:
            return render_error("publisher/conversions.html", exc, {}, conversions=[], status="", **context)
        return render(
            "publisher/conversions.html",
            conversions=await earnings.conversions_of(user_id, status=status),
            status=status or "",
            **context,
        )

    @get("/reports")
    async def reports(self, request: Request) -> Template:
        return await report_page(
            request,
            "publisher/reports.html",
            publisher_reports.report,
            balances=await earnings.money_of(_publisher_id(request)),
        )

    @get("/reports.csv")
    async def reports_csv(self, request: Request) -> Response:
        return await report_csv(request, publisher_reports.report, "publisher")


class Balance(msgspec.Struct):
    """A publisher's money in one currency, in minor units (1250 is 12.50)."""

    currency: str
    pending_minor: int  # not yet payable: uncharged + charged_in_hold
    pending_uncharged_minor: int  # pending conversions, and CPC and CPM hours waiting for the advertiser's funds
    pending_in_hold_minor: int  # charged to the advertiser, in its hold period
    available_minor: int  # payable at the next payout
    receivable_minor: int  # owed after a clawback of money already paid out, netted at the next payout


class Earnings(msgspec.Struct):
    conversions: dict[str, int]  # conversions by status
    balances: list[Balance]  # one per currency
    clicks: list[earnings.ClickEarnings]
    impressions: list[earnings.ImpressionHour]  # the latest hours, newest first


class PublisherEarningsApi(Controller):
    path = "/api/v1"
    guards = [requires_role(Role.publisher)]
    tags = ["earnings"]
    security = [{"apiKey": []}]

    @get("/publisher/earnings", summary="The publisher's conversions, money per currency, CPC and CPM earnings")
    async def publisher_earnings(self, request: Request) -> Earnings:
        user_id = _publisher_id(request)
        balances = [
            Balance(
                currency=m.currency,
                pending_minor=m.pending_minor,
                pending_uncharged_minor=m.pending_uncharged_minor,
                pending_in_hold_minor=m.pending_charged_minor,
                available_minor=m.available_minor,
                receivable_minor=m.receivable_minor,
            )
            for m in await earnings.money_of(user_id)
        ]
        return Earnings(
            conversions=await earnings.conversion_counts(user_id),
            balances=balances,
            clicks=await earnings.click_earnings_of(user_id),
            impressions=await earnings.impression_earnings_of(user_id),
        )


class Figures(msgspec.Struct):
    """A publisher's totals over the period in one currency (amounts in minor units)."""

    currency: str
    impressions: int
    clicks: int  # valid clicks
    invalid_clicks: int
    invalid_impressions: int
    conversions: int  # pending, approved and released (not rejected or reversed)
    rejected: int
    reversed: int
    payout_pending_minor: int  # not approved yet, or in its hold
    payout_confirmed_minor: int  # released: available or paid since
    earnings_minor: int
    paid_minor: int  # payouts Stripe confirmed in the period
    conversion_rate: str | None  # conversions / clicks, exact decimal
    epc_minor: str | None  # earnings per valid click, minor units, exact decimal


class PublisherReport(msgspec.Struct):
    period: dict[str, str]  # from, to (local dates, included), tz, and the UTC instants they span
    updated_at: datetime | None  # when the hourly rollup last ran
    # Hours from here on were counted from the raw events at the time of the request (null: all of
    # them, no rollup has run yet): a conversion is in the report as soon as it is stored.
    live_from: datetime | None
    figures: list[Figures]
    tables: dict[str, list[dict[str, Any]]]  # by_day, by_campaign, by_sub_id, by_slot, by_country, invalid_traffic


class PublisherReportsApi(Controller):
    path = "/api/v1/publisher"
    guards = [requires_role(Role.publisher)]
    tags = ["reports"]
    security = [{"apiKey": []}]

    @get(
        "/reports",
        summary="The publisher's report over a period: totals and each table of the dashboard",
        responses=PERIOD_REFUSALS,
    )
    async def publisher_report(
        self, request: Request, period_from: PeriodFrom = None, period_to: PeriodTo = None, tz: PeriodZone = None
    ) -> PublisherReport:
        """Query: `from`, `to` (YYYY-MM-DD, in `tz`; default the last 30 days), `tz` (an IANA zone;
        default the saved one, or UTC). The same figures as /publisher/reports, the publisher's own."""
        period = await period_of(request)
        report = await publisher_reports.report(_publisher_id(request), period)
        figures = [
            Figures(
                currency=f["currency"],
                impressions=f["impressions"],
                clicks=f["clicks"],
                invalid_clicks=f.get("invalid_clicks", 0),
                invalid_impressions=f.get("invalid_impressions", 0),
                conversions=f["conversions"],
                rejected=f.get("rejected", 0),
                reversed=f.get("reversed", 0),
                payout_pending_minor=f.get("payout_pending", 0),
                payout_confirmed_minor=f.get("payout_confirmed", 0),
                earnings_minor=f["earnings"],
                paid_minor=f.get("paid", 0),
                conversion_rate=None if f["conversion_rate"] is None else str(f["conversion_rate"]),
                epc_minor=None if f["epc"] is None else str(f["epc"]),
            )
            for f in report.figures
        ]
        return PublisherReport(
            period=period.as_dict(),
            updated_at=report.counted.updated,
            live_from=report.counted.live_from,
            figures=figures,
            tables={t.name: t.as_json() for t in report.tables},
        )


# server/app.py registers this one name: the publisher's pages and their JSON API, each guarded.
PublisherDashboard = Router(path="/", route_handlers=[PublisherPages, PublisherEarningsApi, PublisherReportsApi])


class AdvertiserDashboard(Controller):
    path = "/advertiser"
    guards = [requires_role(Role.advertiser)]
    include_in_schema = False

    @get("")
    async def dashboard(self, request: Request) -> Template:
        advertiser: CurrentUser = current_user(request)  # type: ignore[assignment]  # the guard admitted one
        advertiser_id = advertiser.id
        profile = await accounts.advertiser_profile(advertiser_id)
        return render(
            "advertiser/dashboard.html",
            profile=profile,
            # The campaigns publishers applied to and wait for an answer on (the notice at the top).
            waiting=[s for s in await campaigns.summaries(advertiser) if s.waiting],
            balances=await billing.balances_of(advertiser_id),
            spend=await spending.spend_of(advertiser_id),
            paid_for=await spending.paid_for(advertiser_id),
            results=await spending.results_of(advertiser_id),
            campaign_results=await spending.results_of(advertiser_id, per_campaign=True),
            money=money,
        )


class AdvertiserReports(Controller):
    path = "/advertiser"
    guards = [requires_role(Role.advertiser)]
    include_in_schema = False

    @get("/reports")
    async def reports(self, request: Request) -> Template:
        return await report_page(request, "advertiser/reports.html", advertiser_reports.report)

    @get("/reports.csv")
    async def reports_csv(self, request: Request) -> Response:
        return await report_csv(request, advertiser_reports.report, "advertiser")


class AdvertiserFigures(msgspec.Struct):
    """An advertiser's totals over the period in one currency (amounts in minor units)."""

    currency: str
    impressions: int
    clicks: int
    conversions: int  # pending, approved and released (not rejected or reversed)
    approved: int
    spend_minor: int  # charged for the period's events
    pending_minor: int  # not charged yet: pending conversions, hours waiting for funds
    sales_minor: int  # sale amounts reported with approved conversions
    cpa_minor: str | None  # spend per approved conversion, exact decimal
    roi: str | None  # (sales - spend) / spend, exact decimal; None without sales
    balance_minor: int  # the prepaid balance at the end of the period
    days_left: int | None  # days the balance lasts at the period's average daily charge


class AdvertiserReport(msgspec.Struct):
    period: dict[str, str]
    updated_at: datetime | None  # when the hourly rollup last ran
    live_from: datetime | None  # as in PublisherReport
    figures: list[AdvertiserFigures]
    tables: dict[str, list[dict[str, Any]]]  # by_day, by_campaign, by_publisher, by_goal, balance


class AdvertiserReportsApi(Controller):
    path = "/api/v1/advertiser"
    guards = [requires_role(Role.advertiser)]
    tags = ["reports"]
    security = [{"apiKey": []}]

    @get(
        "/reports",
        summary="The advertiser's report over a period: spend, conversions, CPA, ROI, balance",
        responses=PERIOD_REFUSALS,
    )
    async def advertiser_report(
        self, request: Request, period_from: PeriodFrom = None, period_to: PeriodTo = None, tz: PeriodZone = None
    ) -> AdvertiserReport:
        """Query: `from`, `to` (YYYY-MM-DD, in `tz`; default the last 30 days), `tz` (an IANA zone).
        The same figures as /advertiser/reports, for the advertiser's own campaigns only."""
        period = await period_of(request)
        report = await advertiser_reports.report(current_user(request).id, period)  # type: ignore[union-attr]
        figures = [
            AdvertiserFigures(
                currency=f["currency"],
                impressions=f["impressions"],
                clicks=f["clicks"],
                conversions=f["conversions"],
                approved=f["approved"],
                spend_minor=f["spend"],
                pending_minor=f["price_pending"],
                sales_minor=f["sales"],
                cpa_minor=None if f["cpa"] is None else str(f["cpa"]),
                roi=None if f["roi"] is None else str(f["roi"]),
                balance_minor=f["balance"],
                days_left=f["days_left"],
            )
            for f in report.figures
        ]
        return AdvertiserReport(
            period=period.as_dict(),
            updated_at=report.counted.updated,
            live_from=report.counted.live_from,
            figures=figures,
            tables={t.name: t.as_json() for t in report.tables},
        )


class AdminDashboard(Controller):
    path = "/admin"
    guards = [requires_role(Role.admin)]
    include_in_schema = False

    @get("")
    async def dashboard(self) -> Template:
        pending = await accounts.list_publishers(PublisherStatus.pending)
        return render("admin/dashboard.html", pending=pending, counts=await accounts.counts_by_role())
