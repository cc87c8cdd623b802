"""What every role's report pages share: the period asked for (in the reader's time zone), and
a table downloaded as CSV, exactly as the page shows it."""

from __future__ import annotations

from litestar import Request
from litestar.response import Response

from server.accounts.tables import User
from server.errors import NotFound
from server.reports import period as periods
from server.reports.table import ReportTable
from server.web import current_user


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
        raise NotFound(f"This report has no table called “{name[:40]}”.")
    filename = f"affnet-{role}-{table.name}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return Response(content=table.csv().encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"',
                             "cache-control": "no-store"})
