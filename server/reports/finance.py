"""The finance dashboard's figures, read from the ledger and the payout tables (read-only), and the
record of each ledger check (an audit event, so the dashboard can say when it last ran).

Revenue is grouped by a transaction's `effective_at`, not its `created_at`: effective_at is the
accounting date (a conversion approved by the reconciliation job carries the job's clock, and a
late event posts into the open period, MONEY.md I14), while created_at only says when the row
was written. Balances are as they stand now; revenue and payout batches cover the period."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from piccolo.query.functions.aggregate import Count, Sum

from server.accounts import notify
from server.accounts.tables import Role
from server.audit import service as audit
from server.audit.tables import AuditEvent
from server.core import clock, db, i18n
from server.core.hours import hour_sql, utc
from server.core.i18n import _, _l
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerAccount
from server.mail import outbox
from server.payouts.tables import LineStatus, PayoutBatch, PayoutLine
from server.reports.period import Period
from server.reports.report_table import Column, ReportTable, chart_number

CHECK_ACTION = "ledger.checked"
PROBLEMS_KEPT = 50  # problems stored per check: enough to act on, small enough for one audit row
PROBLEMS_MAILED = 5  # the first problems a failed nightly check's mail names; the dashboard has the rest
TABLES = ("revenue_by_day", "balances", "payout_batches")

# A balance as the dashboard shows it: (figure key, account kind, sign). Receivables are <= 0 in
# the ledger (owed to the network); the dashboard shows what is owed as a positive amount.
_BALANCES = (
    ("held_for_advertisers_minor", K.advertiser_balance, 1),
    ("owed_by_advertisers_minor", K.advertiser_receivable, -1),
    ("publisher_pending_minor", K.publisher_pending, 1),
    ("publisher_available_minor", K.publisher_available, 1),
    ("payouts_in_transit_minor", K.payouts_in_transit, 1),
    ("owed_by_publishers_minor", K.publisher_receivable, -1),
)
FIGURE_KEYS = ("revenue_minor", *(key for key, _, _ in _BALANCES), "owed_to_publishers_minor", "paid_out_minor")


# The newest recorded ledger check, as the dashboard and the JSON API show it (no docstring: it would
# become the schema's description in the OpenAPI document).
class LedgerCheck(msgspec.Struct):
    at: datetime  # UTC
    by: str | None  # None: the scheduled job
    ok: bool
    problem_count: int
    problems: list[str]  # the first 50


@dataclass
class FinanceReport:
    period: Period
    tables: list[ReportTable]
    figures: dict[str, dict[str, int]]  # currency -> FIGURE_KEYS -> minor units
    chart: dict[str, Any]
    last_check: LedgerCheck | None = None
    currencies: list[str] = field(default_factory=list)

    def table(self, name: str) -> ReportTable:
        return next(t for t in self.tables if t.name == name)


# --- revenue ----------------------------------------------------------------------------------


async def entry_hours(kind: K, period: Period, owner_id: int | None = None) -> list[dict[str, Any]]:
    """The entries on accounts of one kind (one owner's, or all) per UTC hour of their transaction's
    effective_at and currency, in the period: what came in (entries above zero) and went out
    (below zero, as a positive amount). One grouped query."""
    bucket = hour_sql("t.effective_at")  # a constant expression; every value is bound
    owner = "" if owner_id is None else "AND a.owner = {} "
    rows = await LedgerAccount.raw(
        f"SELECT {bucket} AS hour, e.currency AS currency, "  # noqa: S608
        "SUM(CASE WHEN e.amount_minor > 0 THEN e.amount_minor ELSE 0 END) AS earned, "
        "SUM(CASE WHEN e.amount_minor < 0 THEN -e.amount_minor ELSE 0 END) AS reversed "
        "FROM ledger_entry e JOIN ledger_account a ON a.id = e.account JOIN ledger_txn t ON t.id = e.txn "
        f"WHERE a.kind = {{}} {owner}AND t.effective_at >= {{}} AND t.effective_at < {{}} "
        f"GROUP BY {bucket}, e.currency",
        kind.value,
        *([] if owner_id is None else [owner_id]),
        period.start_utc,
        period.end_utc,
    )
    return [
        {
            "hour": utc(r["hour"]),
            "currency": r["currency"],
            "earned_minor": db.whole(r["earned"]),
            "reversed_minor": db.whole(r["reversed"]),
        }
        for r in rows
    ]


async def revenue_hours(period: Period) -> list[dict[str, Any]]:
    """What the network earned (entries above zero on network_revenue) and gave back (reversals)."""
    return await entry_hours(K.network_revenue, period)


def revenue_table(period: Period, hours: list[dict[str, Any]]) -> ReportTable:
    """One row per local day and currency (every day of the period, quiet ones as 0, for each
    currency that moved): the same figures as the chart."""
    by_day: dict[tuple[str, Any], list[int]] = {}
    for h in hours:
        sums = by_day.setdefault((h["currency"], period.day_of(h["hour"])), [0, 0])
        sums[0] += h["earned_minor"]
        sums[1] += h["reversed_minor"]
    rows = []
    for currency in sorted({c for c, _day in by_day}):
        for day in period.days():
            earned, reversed_ = by_day.get((currency, day), (0, 0))
            rows.append(
                {
                    "day": day,
                    "currency": currency,
                    "earned_minor": earned,
                    "reversed_minor": reversed_,
                    "revenue_minor": earned - reversed_,
                }
            )
    return ReportTable(
        "revenue_by_day",
        _("Network revenue by day (%(zone)s)", zone=period.tz_name),
        [
            Column("day", _l("Day"), "day"),
            Column("currency", _l("Currency")),
            Column("earned_minor", _l("Margin earned"), "money"),
            Column("reversed_minor", _l("Margin reversed"), "money"),
            Column("revenue_minor", _l("Net revenue"), "money"),
        ],
        rows,
        empty=_l("The network earned nothing in this period."),
    )


def revenue_chart(period: Period, table: ReportTable) -> dict[str, Any]:
    """Net revenue per day and currency, in major units for display only (never stored or summed)."""
    series = []
    for currency in sorted({r["currency"] for r in table.rows}):
        series.append(
            {
                "label": _("Net revenue (%(currency)s)", currency=currency),
                "axis": "money",
                "data": [chart_number(r["revenue_minor"], currency) for r in table.rows if r["currency"] == currency],
            }
        )
    labels = [i18n.date_text(d) for d in period.days()]
    return {"type": "bar", "labels": labels, "series": series, "stacked": False}


# --- balances ---------------------------------------------------------------------------------


async def balances() -> dict[str, dict[str, int]]:
    """Current balances per currency, summed over every owner, each as the dashboard shows it."""
    kinds = [kind.value for _, kind, _ in _BALANCES]
    rows = (
        await LedgerAccount.select(
            LedgerAccount.kind,
            LedgerAccount.currency,
            Sum(LedgerAccount.balance_minor).as_alias("total"),
        )
        .where(LedgerAccount.kind.is_in(kinds))
        .group_by(LedgerAccount.kind, LedgerAccount.currency)
    )
    totals = {(r["kind"], r["currency"]): db.whole(r["total"]) for r in rows}
    found: dict[str, dict[str, int]] = {}
    for currency in sorted({c for _kind, c in totals}):
        figures = {key: sign * totals.get((kind.value, currency), 0) for key, kind, sign in _BALANCES}
        figures["owed_to_publishers_minor"] = (
            figures["publisher_pending_minor"]
            + figures["publisher_available_minor"]
            + figures["payouts_in_transit_minor"]
        )
        found[currency] = figures
    return found


def balances_table(found: dict[str, dict[str, int]]) -> ReportTable:
    return ReportTable(
        "balances",
        _l("Balances now"),
        [
            Column("currency", _l("Currency")),
            Column("held_for_advertisers_minor", _l("Held for advertisers"), "money"),
            Column("owed_by_advertisers_minor", _l("Owed by advertisers"), "money"),
            Column("publisher_pending_minor", _l("Publishers: pending"), "money"),
            Column("publisher_available_minor", _l("Publishers: available"), "money"),
            Column("payouts_in_transit_minor", _l("Payouts in transit"), "money"),
            Column("owed_to_publishers_minor", _l("Owed to publishers"), "money"),
            Column("owed_by_publishers_minor", _l("Owed by publishers"), "money"),
        ],
        [{"currency": currency, **figures} for currency, figures in found.items()],
        empty=_l("No money has moved yet."),
    )


# --- payout batches ---------------------------------------------------------------------------


async def payout_batches(period: Period) -> list[dict[str, Any]]:
    """Every batch whose cut-off (period_end) falls in the period, newest first, with its lines
    counted by status: two queries however many batches."""
    batches = (
        await PayoutBatch.select(
            PayoutBatch.id,
            PayoutBatch.period_start,
            PayoutBatch.period_end,
            PayoutBatch.currency,
            PayoutBatch.status,
            PayoutBatch.total_minor,
            PayoutBatch.line_count,
            PayoutBatch.held_count,
        )
        .where(PayoutBatch.period_end >= period.start_utc, PayoutBatch.period_end < period.end_utc)
        .order_by(PayoutBatch.period_end, ascending=False)
        .order_by(PayoutBatch.id, ascending=False)
    )
    stats: dict[tuple[int, str], tuple[int, int]] = {}
    if batches:
        lines = (
            await PayoutLine.select(
                PayoutLine.batch,
                PayoutLine.status,
                Count(PayoutLine.id).as_alias("n"),
                Sum(PayoutLine.amount_minor).as_alias("amount"),
            )
            .where(PayoutLine.batch.is_in([b["id"] for b in batches]))
            .group_by(PayoutLine.batch, PayoutLine.status)
        )
        stats = {(r["batch"], r["status"]): (db.whole(r["n"]), db.whole(r["amount"])) for r in lines}
    rows = []
    for b in batches:
        paid_lines, paid = stats.get((b["id"], LineStatus.paid.value), (0, 0))
        rows.append(
            {
                "batch_id": b["id"],
                "period_start": _minute(period, b["period_start"]),
                "period_end": _minute(period, b["period_end"]),
                "currency": b["currency"],
                "status": b["status"],
                "lines": b["line_count"],
                "held": b["held_count"],
                "paid_lines": paid_lines,
                "paid_minor": paid,
                "failed_lines": stats.get((b["id"], LineStatus.failed.value), (0, 0))[0],
                "returned_lines": stats.get((b["id"], LineStatus.returned.value), (0, 0))[0],
                "total_minor": b["total_minor"],
            }
        )
    return rows


def _minute(period: Period, moment: datetime) -> str:
    return period.local(moment).strftime("%Y-%m-%d %H:%M")  # type: ignore[union-attr]  # never None here


def payout_table(period: Period, rows: list[dict[str, Any]]) -> ReportTable:
    return ReportTable(
        "payout_batches",
        _("Payout batches with a cut-off in this period (%(zone)s)", zone=period.tz_name),
        [
            Column("batch_id", _l("Batch")),
            Column("period_start", _("Period start (%(zone)s)", zone=period.tz_name)),
            Column("period_end", _("Cut-off (%(zone)s)", zone=period.tz_name)),
            Column("currency", _l("Currency")),
            Column("status", _l("Status")),
            Column("lines", _l("Lines"), "count"),
            Column("held", _l("Held"), "count"),
            Column("paid_lines", _l("Paid lines"), "count"),
            Column("paid_minor", _l("Paid"), "money"),
            Column("failed_lines", _l("Failed lines"), "count"),
            Column("returned_lines", _l("Returned lines"), "count"),
            Column("total_minor", _l("To pay"), "money"),
        ],
        rows,
        empty=_l("No payout period ended in these dates."),
    )


# --- the ledger check -------------------------------------------------------------------------


async def check_ledger(actor_id: int | None, *, now: datetime | None = None) -> dict[str, Any]:
    """Run every invariant check (read-only) and record the result as an audit event: by the
    scheduled job (actor None) or a finance person pressing the button. A scheduled check that found
    problems also mails finance and admins, with the record (once per UTC day: a rerun of the night's
    job tells nobody twice); a person pressing the button reads the result on the page."""
    problems = await ledger.check()
    async with db.transaction():
        await audit.record(
            CHECK_ACTION,
            actor_id=actor_id,
            object_type="ledger",
            object_id=None,
            ok=not problems,
            problem_count=len(problems),
            problems=problems[:PROBLEMS_KEPT],
        )
        if problems and actor_id is None:
            day = (now or clock.now()).astimezone(UTC).date()
            await notify.send_to_role(
                "ledger_check_failed",
                (Role.finance,),
                {
                    "problem_count": len(problems),
                    "problems": problems[:PROBLEMS_MAILED],
                    "dashboard_url": outbox.link("/finance#ledger-check"),
                },
                dedupe_key=f"ledger_check_failed:{day.isoformat()}",
                now=now,
            )
    return {"ok": not problems, "problem_count": len(problems), "problems": problems[:PROBLEMS_KEPT]}


async def last_ledger_check() -> LedgerCheck | None:
    """The newest recorded check: when (UTC), by whom (None: the scheduled job), and what it found."""
    row = (
        await AuditEvent.select(
            AuditEvent.created_at,
            AuditEvent.detail,
            AuditEvent.actor.email.as_alias("actor_email"),
        )
        .where(AuditEvent.action == CHECK_ACTION)
        .order_by(AuditEvent.id, ascending=False)
        .first()
    )
    if row is None:
        return None
    detail = row["detail"]
    detail = json.loads(detail) if isinstance(detail, str) else (detail or {})
    return LedgerCheck(
        at=utc(row["created_at"]),
        by=row["actor_email"],
        ok=bool(detail.get("ok")),
        problem_count=int(detail.get("problem_count", 0)),
        problems=list(detail.get("problems", [])),
    )


# --- the whole dashboard ------------------------------------------------------------------------


async def report(period: Period) -> FinanceReport:
    """Everything the finance dashboard, its CSV downloads and its JSON API show, for one period."""
    revenue = revenue_table(period, await revenue_hours(period))
    found = await balances()
    batches = payout_table(period, await payout_batches(period))
    currencies = sorted({*found, *(r["currency"] for r in revenue.rows), *(r["currency"] for r in batches.rows)})
    figures: dict[str, dict[str, int]] = {}
    for currency in currencies:
        figures[currency] = {key: 0 for key in FIGURE_KEYS}
        figures[currency].update(found.get(currency, {}))
        figures[currency]["revenue_minor"] = sum(r["revenue_minor"] for r in revenue.rows if r["currency"] == currency)
        figures[currency]["paid_out_minor"] = sum(r["paid_minor"] for r in batches.rows if r["currency"] == currency)
    return FinanceReport(
        period=period,
        tables=[revenue, balances_table(found), batches],
        figures=figures,
        chart=revenue_chart(period, revenue),
        last_check=await last_ledger_check(),
        currencies=currencies,
    )
