"""What every role's report pages share: the period asked for (in the reader's time zone), when
the figures were counted, and a table downloaded as CSV (the rows the page shows, in machine
formats under headings in the reader's language)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from litestar import Request
from litestar.params import QueryParameter
from litestar.response import Response, Template

from server.accounts.tables import User
from server.core import hours, i18n, money
from server.core import locale as locales
from server.core.errors import Invalid, NotFound
from server.core.i18n import _
from server.http.openapi import refusals
from server.http.pages import render, render_error
from server.http.web import current_user
from server.reports import period as periods
from server.reports.report_table import ReportTable, percent_display, rate_display

# The period of the reports API, declared so its OpenAPI document lists it; period_of reads the
# query itself (one parser for pages, CSV and API), and a period it cannot read is a 400.
_DAY_OR_NOTHING = r"^(\d{4}-\d{2}-\d{2})?$"  # empty is the default, as the report form sends it
PeriodFrom = Annotated[
    str | None,
    QueryParameter(
        name="from",
        description="First day, YYYY-MM-DD in `tz` (default: 30 days before `to`); at most "
        f"{periods.MAX_DAYS} days before `to`",
        schema_extra={"pattern": _DAY_OR_NOTHING},
    ),
]
PeriodTo = Annotated[
    str | None,
    QueryParameter(
        name="to",
        description="Last day, included, YYYY-MM-DD in `tz` (default: today)",
        schema_extra={"pattern": _DAY_OR_NOTHING},
    ),
]
PeriodZone = Annotated[
    str | None,
    QueryParameter(
        name="tz",
        description="An IANA time zone such as Europe/Berlin (default: the saved one, or UTC)",
        schema_extra={"pattern": r"^([A-Za-z_]+(/[A-Za-z0-9_+-]+)*)?$"},
    ),
]
PERIOD_REFUSALS = refusals(
    (
        periods.BadPeriod,
        "The period cannot be read: `error.field` names `from`, `to` or `tz` and `error.message` says what to send.",
    )
)

Build = Callable[[int, periods.Period], Awaitable[Any]]  # (the reader's user id, the period) -> a report


async def saved_time_zone(user_id: int) -> str:
    row = await User.select(User.time_zone).where(User.id == user_id).first()
    return row["time_zone"] if row else ""


async def period_of(request: Request) -> periods.Period:
    """The period in the query (`from`, `to`, `tz`), by default the last 30 days in the reader's
    saved time zone. Raises Invalid with a message a person can act on."""
    user = current_user(request)
    saved = await saved_time_zone(user.id) if user else ""
    return periods.parse(request.query_params, saved_tz=saved)


def csv_download(tables: list[ReportTable], name: str, period: periods.Period, role: str) -> Response:
    """The table called `name` as a CSV attachment (the page's first table when no name is given);
    NotFound for a name the page does not show."""
    table = next((t for t in tables if t.name == name), None) if name else tables[0]
    if table is None:
        raise NotFound(_("This report has no table called “%(name)s”.", name=name[:40]))
    filename = f"affnet-{role}-{table.name}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return Response(
        content=table.csv().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"},
    )


def in_zone(moment: datetime | None, tz_name: str) -> str:
    """A moment as the reader writes it (12/05/2026 14:05 in French), in the report's time zone
    rather than the saved one: the page names that zone."""
    with locales.using(locales.current(), tz_name):
        return i18n.datetime_text(moment)


async def report_page(request: Request, template: str, build: Build, **extra: Any) -> Template:
    """A role's report page over the period asked for; a period that cannot be read shows the
    form again with what to fix (400) and no figures."""
    user_id = current_user(request).id  # type: ignore[union-attr]  # the route's guard admitted them
    saved = await saved_time_zone(user_id)
    context = {
        "zones": hours.zones(),
        "saved_tz": saved,
        "money": money,
        "percent_text": percent_display,
        "rate_text": rate_display,
        "in_zone": in_zone,
        **extra,
    }
    try:
        period = periods.parse(request.query_params, saved_tz=saved)
    except Invalid as exc:
        return render_error(
            template, exc, dict(request.query_params), report=None, period=periods.parse({}, saved_tz=saved), **context
        )
    return render(template, report=await build(user_id, period), period=period, **context)


async def report_csv(request: Request, build: Build, role: str) -> Response:
    """One table of a role's report, the rows the page shows (a bad period: 400)."""
    period = await period_of(request)
    report = await build(current_user(request).id, period)  # type: ignore[union-attr]
    return csv_download(report.tables, request.query_params.get("table", ""), period, role)
