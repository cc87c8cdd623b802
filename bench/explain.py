"""EXPLAIN of the hot queries on PostgreSQL with clicks and impressions partitioned by day.

    .venv/bin/python bench/explain.py [--days 30] [--clicks-per-day 20000] [--database-url URL]

Makes a fresh database (a throwaway PostgreSQL on loopback, or --database-url, which must be empty),
migrates it, has the worker's job make the day partitions of the last --days days and a week ahead,
and loads clicks (spread over those days), impressions and conversions of 1% of the clicks with
plain SQL (its own rows for the tables they refer to). Then prints the plan of:

1. the click writer's insert (COPY has no plan: this is its row-by-row fallback, ON CONFLICT);
2. the rollup's read of one hour of clicks and impressions (server/reports/rollup.py);
3. the rollup's conversions of one hour, with their clicks looked up by click id;
4. CPC pricing's read of one campaign's clicks in one closed hour (server/earnings/cpc.py);
5. a report page's query, as `publisher.report()` sends it (it reads rollups only);
6. the publisher dashboard's click table (server/reports/traffic.py): the rolled-up hours, then
   the raw clicks of the hour the rollup has not covered yet.

Plans 2-5 are EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF): the partitions read are the
ones named, "Subplans Removed" counts those pruned when the plan starts, "(never executed)" those
pruned while it runs. Loopback only; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from dev.services import start_postgres  # noqa: E402
from server import piccolo_app  # noqa: E402
from server.core import db, partitions  # noqa: E402
from server.core.hours import hour_sql  # noqa: E402
from server.reports import publisher, rollup, traffic  # noqa: E402
from server.reports.period import Period  # noqa: E402
from server.reports.tables import RollupCursor  # noqa: E402

SECRET = "bench-secret-key-that-is-long-enough-for-production-0123456789"  # noqa: S105 - a throwaway database
_FILL = {"integer": "1", "bigint": "1", "boolean": "false", "json": "'{}'", "jsonb": "'{}'"}


async def _row_one(con: asyncpg.Connection, table: str, given: dict[str, str], text: str = "'x' || n") -> str:
    """An INSERT … SELECT list for `table` filling every required column (`given` overrides)."""
    required = await con.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 "
        "AND is_nullable = 'NO' AND column_default IS NULL AND column_name <> 'id'",
        table,
    )
    values = {
        r["column_name"]: _FILL.get(r["data_type"], "now()" if "time" in r["data_type"] else text) for r in required
    }
    values.update(given)
    return f"INSERT INTO {table} ({', '.join(values)}) SELECT {', '.join(values.values())}"  # noqa: S608


async def load(url: str, days: int, per_day: int, today: datetime) -> None:
    con = await asyncpg.connect(url)
    try:
        await con.execute("SET session_replication_role = replica")  # the referred-to rows are stand-ins
        unique = {"app_user": "email", "campaign": "public_key", "link": "code", "ad_slot": "public_key"}
        for table in ("app_user", "campaign", "link", "ad_slot", "creative", "goal"):
            given = {"id": "n", **({unique[table]: "'u' || n"} if table in unique else {})}
            if table == "link":
                given["membership"] = "n"
            await con.execute((await _row_one(con, table, given)) + " FROM generate_series(1, 20) n")
        total = days * per_day
        step = f"{days * 86400.0 / total} * interval '1 second'"
        await con.execute(
            "INSERT INTO click (click_id, clicked_at, link, campaign, publisher, sub1, reason, slot, country) "  # noqa: S608
            f"SELECT 'c' || n, $1::timestamptz - n * {step}, 1 + n % 20, 1 + n % 20, 1 + n % 20, 's' || n % 10, "
            "CASE WHEN n % 9 = 0 THEN 'duplicate' ELSE 'valid' END, CASE WHEN n % 7 = 0 THEN 1 + n % 20 END, 'DE' "
            "FROM generate_series(1, $2) n",
            today,
            total,
        )
        await con.execute(
            "INSERT INTO impression (offer, viewed_at, slot, creative, campaign, publisher) "  # noqa: S608
            f"SELECT 'o' || n, $1::timestamptz - n * {step} * 2, 1 + n % 20, 1 + n % 20, 1 + n % 20, 1 + n % 20 "
            "FROM generate_series(1, $2) n",
            today,
            total // 2,
        )
        conversion = await _row_one(
            con,
            "conversion",
            {
                "campaign": "campaign",
                "goal": "campaign",
                "publisher": "publisher",
                "link": "link",
                "click_id": "click_id",
                "txn_id": "'t' || id",
                "currency": "'EUR'",
                "status": "'pending'",
                "clicked_at": "date_trunc('second', clicked_at)",
                "converted_at": "clicked_at + interval '2 hours'",
            },
            "'x' || id",
        )
        await con.execute(conversion + " FROM click WHERE id % 100 = 0")
        await con.execute("ANALYZE")
    finally:
        await con.close()


async def explain(con: asyncpg.Connection, title: str, sql: str, *args: object, analyze: bool = True) -> None:
    options = "ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF" if analyze else "COSTS OFF"
    rows = await con.fetch(f"EXPLAIN ({options}) {sql}", *args)
    print(f"\n### {title}\n\n```sql\n{sql}\n```\n```")
    print("\n".join(r[0] for r in rows))
    print("```")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--clicks-per-day", type=int, default=20_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    service, scratch = None, Path(tempfile.mkdtemp(prefix="affnet-explain-"))
    url = args.database_url
    if url is None:
        service = start_postgres(scratch)
        url = service.url
    try:
        env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET}
        migrate = [sys.executable, "-m", "server.cli", "migrate"]
        await asyncio.to_thread(subprocess.run, migrate, cwd=ROOT, env=env, check=True, capture_output=True)
        engine = piccolo_app.bind(db.engine_for(url))
        await db.start(engine)
        now = datetime.now(UTC)
        for back in range(args.days + 1, -1, -7):  # the job makes yesterday to a week ahead each run
            await partitions.create_ahead((now - timedelta(days=back)).date())
        await load(url, args.days, args.clicks_per_day, now)
        await rollup.roll_up(now)  # the reports read the rollups
        version = (await RollupCursor.raw("SELECT version() AS v"))[0]["v"]
        print(f"# EXPLAIN of the hot queries\n\n{version}; {args.days} days x {args.clicks_per_day} clicks, ")
        print("half as many impressions, conversions of 1% of the clicks; a partition per UTC day.")

        hour = (now - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
        sql_hour = f"{hour:%Y-%m-%d %H}:00:00+00"
        sql_end = f"{hour + timedelta(hours=1):%Y-%m-%d %H}:00:00+00"
        # The rollup's SELECTs, without their INSERT (constants only; Piccolo's {} become literals).
        traffic_select = rollup._traffic_sql().split(" SELECT ", 1)[1]
        conversions = rollup._conversion_sql().split(" SELECT ", 1)[1]
        report_sql: list[tuple[str, tuple]] = []
        real_raw = RollupCursor.raw

        def capture(sql: str, *params: object):  # the report's own statements, as it sends them
            report_sql.append((sql, params))
            return real_raw(sql, *params)

        RollupCursor.raw = capture  # type: ignore[method-assign]
        await publisher.report(1, Period((now - timedelta(days=30)).date(), now.date(), "Europe/Berlin"))
        dashboard = len(report_sql)
        await traffic.click_stats(1)
        RollupCursor.raw = real_raw  # type: ignore[method-assign]

        con = await asyncpg.connect(url)
        try:
            await explain(
                con,
                "1. The click writer's insert (the fallback after a COPY met a known click id)",
                "INSERT INTO click (click_id, clicked_at, link, campaign, publisher) "
                "VALUES ($1, $2, 1, 1, 1) ON CONFLICT DO NOTHING",
                "c-new",
                now,
                analyze=False,
            )
            await explain(
                con,
                "2. The rollup's read of one hour of clicks and impressions",
                "SELECT " + traffic_select.replace("{}", "'{}'").format(sql_hour, sql_end, sql_hour, sql_end),
            )
            await explain(
                con,
                "3. The rollup's conversions of one hour, each click looked up by its id",
                "SELECT " + conversions.replace("{}", "'{}'").format(sql_hour, sql_end),
            )
            click_hour = hour_sql("clicked_at")
            await explain(
                con,
                "4. CPC pricing: one campaign's valid clicks in one closed hour, in order",
                f"SELECT publisher, {click_hour} FROM click WHERE campaign = 3 AND reason = 'valid' "  # noqa: S608
                f"AND clicked_at >= '{sql_hour}' AND clicked_at < '{sql_end}' ORDER BY clicked_at, id",
            )
            plans = [
                ("5. A report page's query (publisher.report, by day, last 30 days)", report_sql[0]),
                ("6a. The dashboard's click table: the rolled-up hours", report_sql[dashboard]),
                ("6b. The dashboard's click table: the raw clicks since", report_sql[dashboard + 1]),
            ]
            for title, (sql, params) in plans:
                numbered = sql
                for i in range(1, len(params) + 1):
                    numbered = numbered.replace("{}", f"${i}", 1)
                await explain(con, title, numbered, *params)
        finally:
            await con.close()
        await db.stop(engine)
    finally:
        if service is not None:
            service.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
