"""The finance dashboard (GET /finance), its tables as CSV, the "check the ledger now" button, and
the same figures as JSON (GET /api/v1/finance/reports). Finance only; the figures are the
network's, so no other role may read them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.response import Redirect, Template

from server.accounts.tables import Role
from server.core import hours, money
from server.core.errors import Invalid
from server.http.pages import form_data, render, render_error, see_other
from server.http.reports.common import (
    PERIOD_REFUSALS,
    PeriodFrom,
    PeriodTo,
    PeriodZone,
    period_of,
    report_csv,
    saved_time_zone,
)
from server.http.web import current_user, requires_role
from server.reports import finance
from server.reports import period as periods

PAGE = "finance/dashboard.html"
_RANGE_KEYS = ("from", "to", "tz")


async def _report(_user_id: int, period: periods.Period) -> finance.FinanceReport:
    return await finance.report(period)  # the network's figures: the same whoever in finance reads them


def _page_context(report: finance.FinanceReport | None, period: periods.Period) -> dict[str, Any]:
    return {"report": report, "period": period, "zones": hours.zones(), "money": money}


class FinanceReports(Controller):
    path = "/finance"
    guards = [requires_role(Role.finance)]
    include_in_schema = False

    @get("")
    async def dashboard(self, request: Request) -> Template:
        try:
            period = await period_of(request)
        except Invalid as exc:  # server/reports/period.py: a 400 with what to fix
            # Show the form again, on the default range, with what to fix; no figures for a range we cannot read.
            user = current_user(request)
            saved = await saved_time_zone(user.id) if user else ""
            fallback = periods.parse({}, saved_tz=saved if saved in hours.zones() else "")
            return render_error(PAGE, exc, dict(request.query_params), **_page_context(None, fallback))
        return render(PAGE, **_page_context(await finance.report(period), period))

    @get("/reports.csv")
    async def reports_csv(self, request: Request) -> Response:
        """One of the dashboard's tables (`table`, by default the revenue by day) for the period."""
        return await report_csv(request, _report, "finance")

    @post("/ledger-check")
    async def check_ledger(self, request: Request) -> Redirect:
        form = await form_data(request)
        await finance.check_ledger(current_user(request).id)  # type: ignore[union-attr]  # the guard admitted a user
        # Back to the range the person was reading; the dashboard validates it again.
        back = {k: form[k][:64] for k in _RANGE_KEYS if form.get(k)}
        return see_other("/finance" + ("?" + urlencode(back) if back else "") + "#ledger-check")


class CurrencyFigures(msgspec.Struct):
    """The network's money in one currency, in minor units (1250 is 12.50 EUR)."""

    currency: str
    revenue_minor: int  # net margin earned in the period
    held_for_advertisers_minor: int  # prepaid, unspent advertiser balances now
    owed_by_advertisers_minor: int  # refunds or disputes their balance could not cover
    publisher_pending_minor: int  # publishers' earnings in their hold
    publisher_available_minor: int  # payable at the next payout
    payouts_in_transit_minor: int  # reserved for payout lines until Stripe confirms
    owed_to_publishers_minor: int  # pending + available + in transit
    owed_by_publishers_minor: int  # clawed back after payout, netted at the next payout
    paid_out_minor: int  # paid in the batches whose cut-off falls in the period


class FinanceReportBody(msgspec.Struct):
    period: dict[str, str]  # from, to (local dates, inclusive), tz, start_utc, end_utc (excluded)
    figures: list[CurrencyFigures]
    tables: dict[str, list[dict[str, Any]]]  # revenue_by_day, balances, payout_batches: the dashboard's rows
    ledger_check: finance.LedgerCheck | None


class FinanceReportsApi(Controller):
    path = "/api/v1/finance"
    guards = [requires_role(Role.finance)]
    tags = ["reports"]
    security = [{"apiKey": []}]

    @get(
        "/reports",
        summary="The network's revenue, balances, payout batches and last ledger check for a period",
        responses=PERIOD_REFUSALS,
    )
    async def reports(
        self, request: Request, period_from: PeriodFrom = None, period_to: PeriodTo = None, tz: PeriodZone = None
    ) -> FinanceReportBody:
        """`from`, `to` (YYYY-MM-DD, inclusive) and `tz` (IANA) are optional: by default the last 30
        days in your saved time zone. Amounts are integers in minor units; times are UTC."""
        report = await finance.report(await period_of(request))  # a bad period: 400 JSON (server/http/web.py)
        return FinanceReportBody(
            period=report.period.as_dict(),
            figures=[CurrencyFigures(currency=c, **figures) for c, figures in report.figures.items()],
            tables={t.name: t.as_json() for t in report.tables},
            ledger_check=report.last_check,
        )
