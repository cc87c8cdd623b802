"""Hourly rollups: raw clicks, impressions and conversions counted into TrafficHour and
ConversionHour, which every dashboard reads instead of the raw events.

An hour's rollup rows are a pure function of the raw rows of that hour, so an hour is always
rebuilt whole (delete its rows, insert them again from the raw events, in one transaction):
running a rollup twice, or two at once, gives the same rows as running it once.

- `roll_up` (every five minutes) rebuilds the hours events are arriving in, since its last run,
  and every hour holding a conversion that changed since (a database trigger stamps
  conversion.changed_at on any approval, rejection, release, reversal or re-pricing, whoever
  made it). The first run rolls up the whole history.
- `rebuild_day` (nightly) rebuilds every hour of a UTC day from the raw events, and the hours of
  conversions that changed during it, so clicks and impressions written late, and anything an
  incremental run missed, show in the reports by the next morning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from server.core import clock, db
from server.core.hours import HOUR, hour_of, hour_sql, utc
from server.reports.tables import RollupCursor

# Rows of a transaction that committed a little after it stamped them are still found: every run
# looks this far behind where the last one stopped (rebuilding an hour twice is harmless).
OVERLAP = timedelta(minutes=10)
TRAFFIC, CONVERSIONS = "traffic", "conversions"
# Raw clicks and impressions before this moment are gone (server/reports/retention.py): their
# hours are never rebuilt, their rollups stay as they are.
RAW_FLOOR = "raw_floor"
_LOCK = 7_301_001  # the PostgreSQL advisory lock that serialises rebuilds of the rollups

_TRAFFIC_COLUMNS = "hour, publisher, campaign, currency, sub1, slot, country, reason, impressions, clicks"
_CONVERSION_COLUMNS = (
    "hour, publisher, campaign, goal, currency, sub1, slot, country, status, conversions, "
    "sale_minor, price_minor, payout_minor, margin_minor, pixel_conversions"
)


def raw_traffic_sql(owner: str = "") -> str:
    """traffic_hour's rows counted from the raw clicks and impressions of [start, end), bound as
    (start, end, start, end). `owner` narrows them: a condition on `{t}.publisher` or
    `{t}.campaign` with one bound value, added after each (start, end)."""
    click_hour, view_hour = hour_sql("c.clicked_at"), hour_sql("i.viewed_at")
    of_clicks = f" AND {owner.replace('{t}', 'c')}" if owner else ""
    of_views = f" AND {owner.replace('{t}', 'i')}" if owner else ""
    return (
        "SELECT e.hour, e.publisher, e.campaign, k.currency, e.sub1, e.slot, e.country, e.reason, "  # noqa: S608
        "SUM(e.impressions) AS impressions, SUM(e.clicks) AS clicks FROM ("
        f"SELECT {click_hour} AS hour, c.publisher, c.campaign, c.sub1, COALESCE(c.slot, 0) AS slot, c.country, "
        "c.reason, 0 AS impressions, COUNT(*) AS clicks FROM click c "
        f"WHERE c.clicked_at >= {{}} AND c.clicked_at < {{}}{of_clicks} GROUP BY 1, 2, 3, 4, 5, 6, 7 "
        f"UNION ALL SELECT {view_hour}, i.publisher, i.campaign, '', i.slot, i.country, i.reason, COUNT(*), 0 "
        f"FROM impression i WHERE i.viewed_at >= {{}} AND i.viewed_at < {{}}{of_views} GROUP BY 1, 2, 3, 4, 5, 6, 7"
        ") e JOIN campaign k ON k.id = e.campaign "
        "GROUP BY e.hour, e.publisher, e.campaign, k.currency, e.sub1, e.slot, e.country, e.reason"
    )


def _traffic_sql() -> str:
    return f"INSERT INTO traffic_hour ({_TRAFFIC_COLUMNS}) {raw_traffic_sql()}"


# The narrow rollups, from traffic_hour rows of the hours being rebuilt (constants only).
_NARROW_SQL = [
    "INSERT INTO traffic_campaign_hour (hour, publisher, campaign, currency, reason, impressions, clicks) "
    "SELECT hour, publisher, campaign, currency, reason, SUM(impressions), SUM(clicks) FROM traffic_hour "
    "WHERE hour >= {} AND hour < {} GROUP BY hour, publisher, campaign, currency, reason",
    *(
        "INSERT INTO traffic_slice_hour (hour, publisher, currency, dim, key, clicks, invalid_clicks, impressions, "  # noqa: S608
        f"invalid_impressions) SELECT hour, publisher, currency, '{dim}', {key}, "
        "SUM(CASE WHEN reason = 'valid' THEN clicks ELSE 0 END), "
        "SUM(CASE WHEN reason <> 'valid' THEN clicks ELSE 0 END), "
        "SUM(CASE WHEN reason = 'valid' THEN impressions ELSE 0 END), "
        "SUM(CASE WHEN reason <> 'valid' THEN impressions ELSE 0 END) FROM traffic_hour "
        f"WHERE hour >= {{}} AND hour < {{}} GROUP BY hour, publisher, currency, {key}"
        for dim, key in (("sub1", "sub1"), ("slot", "CAST(slot AS TEXT)"), ("country", "country"))
    ),
]
NARROW_TABLES = ("traffic_campaign_hour", "traffic_slice_hour")


def raw_conversion_sql(owner: str = "") -> str:
    """conversion_hour's rows counted from the conversions of [start, end), bound as (start, end).
    `owner` narrows them: a condition on `{t}.publisher` or `{t}.campaign` with one bound value,
    bound after them."""
    hour = hour_sql("v.converted_at")
    # PostgreSQL: a click is looked up in the days around the conversion's copy of its time (the
    # second its id carries), so only those days' partitions are read, not every day's index.
    near = (
        ""
        if db.is_sqlite()
        else " AND c.clicked_at >= v.clicked_at - interval '1 day' AND c.clicked_at < v.clicked_at + interval '1 day'"
    )
    of_owner = f" AND {owner.replace('{t}', 'v')}" if owner else ""
    return (
        f"SELECT {hour} AS hour, v.publisher, v.campaign, v.goal, v.currency, "  # noqa: S608  (constants only)
        "COALESCE(c.sub1, k.sub1, '') AS sub1, COALESCE(c.slot, k.slot, 0) AS slot, "
        "COALESCE(c.country, k.country, '') AS country, "
        "CASE WHEN v.status = 'approved' AND v.released_at IS NOT NULL THEN 'released' ELSE v.status END AS status, "
        "COUNT(*) AS conversions, COALESCE(SUM(v.sale_amount_minor), 0) AS sale_minor, "
        "SUM(v.advertiser_amount_minor) AS price_minor, SUM(v.publisher_amount_minor) AS payout_minor, "
        "SUM(v.network_amount_minor) AS margin_minor, "
        "SUM(CASE WHEN v.source = 'pixel' THEN 1 ELSE 0 END) AS pixel_conversions "
        f"FROM conversion v LEFT JOIN click c ON c.click_id = v.click_id{near} "
        "LEFT JOIN converted_click k ON k.click_id = v.click_id AND c.click_id IS NULL "
        f"WHERE v.converted_at >= {{}} AND v.converted_at < {{}}{of_owner} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
    )


def _conversion_sql() -> str:
    return f"INSERT INTO conversion_hour ({_CONVERSION_COLUMNS}) {raw_conversion_sql()}"


def ranges(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours merged into [start, end) ranges, in order."""
    merged: list[tuple[datetime, datetime]] = []
    for hour in sorted({hour_of(h) for h in hours}):
        if merged and merged[-1][1] == hour:
            merged[-1] = (merged[-1][0], hour + HOUR)
        else:
            merged.append((hour, hour + HOUR))
    return merged


async def lock_rebuilds() -> None:
    """Wait for any running rebuild, and hold others off, until the current transaction ends."""
    if not db.is_sqlite():  # SQLite's BEGIN IMMEDIATE already lets one writer in at a time
        await RollupCursor.raw("SELECT pg_advisory_xact_lock({})", _LOCK)


async def rebuild_traffic(start: datetime, end: datetime) -> None:
    """Rebuild every TrafficHour row of the hours in [start, end) from clicks and impressions, and
    the narrow rollups (by campaign; by sub-ID, slot or country) from those rows."""
    start, end = hour_of(start), hour_of(end - timedelta(microseconds=1)) + HOUR
    async with db.transaction():
        await lock_rebuilds()
        gone = await raw_floor()  # read under the lock: retention records it before it drops
        if gone is not None and start < gone:
            start = gone
            if start >= end:
                return
        for table in ("traffic_hour", *NARROW_TABLES):
            await RollupCursor.raw(f"DELETE FROM {table} WHERE hour >= {{}} AND hour < {{}}", start, end)  # noqa: S608
        await RollupCursor.raw(_traffic_sql(), start, end, start, end)
        for sql in _NARROW_SQL:
            await RollupCursor.raw(sql, start, end)


async def rebuild_conversions(hour_ranges: Iterable[tuple[datetime, datetime]]) -> None:
    """Rebuild every ConversionHour row of these hour ranges from the conversions."""
    for start, end in hour_ranges:
        start, end = hour_of(start), hour_of(end - timedelta(microseconds=1)) + HOUR
        async with db.transaction():
            await lock_rebuilds()
            await RollupCursor.raw("DELETE FROM conversion_hour WHERE hour >= {} AND hour < {}", start, end)
            await RollupCursor.raw(_conversion_sql(), start, end)


async def _changed_hours(since: datetime, until: datetime | None = None) -> tuple[list[datetime], datetime | None]:
    """The hours of conversions stamped changed at or after `since` (and before `until`), and the
    latest stamp seen."""
    hour = hour_sql("converted_at")
    sql = f"SELECT DISTINCT {hour} AS hour FROM conversion WHERE changed_at >= {{}}"  # noqa: S608
    args: list[Any] = [since]
    if until is not None:
        sql += " AND changed_at < {}"
        args.append(until)
    rows = await RollupCursor.raw(sql, *args)
    latest = await RollupCursor.raw("SELECT MAX(changed_at) AS latest FROM conversion WHERE changed_at >= {}", since)
    return [utc(r["hour"]) for r in rows], utc(latest[0]["latest"]) if latest[0]["latest"] else None


async def _first_event() -> datetime | None:
    found = []
    for table, column in (("click", "clicked_at"), ("impression", "viewed_at"), ("conversion", "converted_at")):
        rows = await RollupCursor.raw(f"SELECT MIN({column}) AS first FROM {table}")  # noqa: S608  (constants)
        if rows[0]["first"] is not None:
            found.append(utc(rows[0]["first"]))
    return min(found) if found else None


async def _cursor(name: str) -> datetime | None:
    row = await RollupCursor.select(RollupCursor.moment).where(RollupCursor.name == name).first()
    return utc(row["moment"]) if row else None


async def _move(name: str, moment: datetime) -> None:
    async with db.transaction():
        if await RollupCursor.exists().where(RollupCursor.name == name):
            await RollupCursor.update({RollupCursor.moment: moment}).where(RollupCursor.name == name)
        else:
            await RollupCursor.insert(RollupCursor(name=name, moment=moment))


@dataclass(frozen=True)
class Rolled:
    traffic_hours: int  # hours of clicks and impressions rebuilt
    conversion_hours: int  # hours of conversions rebuilt


async def roll_up(now: datetime) -> Rolled:
    """The incremental run: the hours events arrived in since the last run, and the hours of
    conversions that changed since. `now` is the job's clock."""
    now = now.astimezone(UTC)
    traffic_since = await _cursor(TRAFFIC)
    conversions_since = await _cursor(CONVERSIONS)
    if traffic_since is None or conversions_since is None:  # the first run: the whole history
        first = await _first_event()
        if first is None:
            await _move(TRAFFIC, now)
            return Rolled(0, 0)
        traffic_since = conversions_since = first + OVERLAP
    start = hour_of(min(traffic_since - OVERLAP, now))
    end = hour_of(now) + HOUR
    await rebuild_traffic(start, end)
    # The stamps are the database's clock, not the job's: the conversions' cursor is the latest
    # stamp this run saw.
    changed, latest = await _changed_hours(conversions_since - OVERLAP)
    hours = ranges([*changed, *(start + HOUR * i for i in range(int((end - start) / HOUR)))])
    await rebuild_conversions(hours)
    await _move(TRAFFIC, now)
    await _move(CONVERSIONS, max(latest or conversions_since, conversions_since))
    return Rolled(int((end - start) / HOUR), sum(int((b - a) / HOUR) for a, b in hours))


async def rebuild_day(day_start: datetime) -> Rolled:
    """The nightly rebuild of one UTC day: its 24 hours from the raw events, and the hours of the
    conversions that changed during it (late reports, approvals, reversals of older conversions)."""
    start = hour_of(day_start).replace(hour=0)
    end = start + timedelta(days=1)
    await rebuild_traffic(start, end)
    changed, _ = await _changed_hours(start - OVERLAP, end)
    hours = ranges([*changed, *(start + HOUR * i for i in range(24))])
    await rebuild_conversions(hours)
    return Rolled(24, sum(int((b - a) / HOUR) for a, b in hours))


async def rebuild_all() -> Rolled:
    """Every hour from the first event to now (the operator's `affnet reports rebuild`)."""
    first = await _first_event()
    if first is None:
        return Rolled(0, 0)
    start, end = hour_of(first), hour_of(clock.now()) + HOUR
    await rebuild_traffic(start, end)
    await rebuild_conversions([(start, end)])
    hours = int((end - start) / HOUR)
    return Rolled(hours, hours)


async def raw_floor() -> datetime | None:
    """Raw events before this moment were dropped by retention (None: none were)."""
    return await _cursor(RAW_FLOOR)


async def updated_at() -> datetime | None:
    """When the incremental rollup last ran."""
    return await _cursor(TRAFFIC)


def live_from(updated: datetime | None) -> datetime | None:
    """The hour from which the raw events are read instead of the rollups, given when the rollup
    last ran: the rollups may miss a row committed a little after that run stamped it (OVERLAP).
    None before the first run: the rollups hold nothing yet, every hour is read raw."""
    return hour_of(updated - OVERLAP) if updated is not None else None


@dataclass(frozen=True)
class Counted:
    """When a report's figures were counted: from the rollups up to `live_from` (the hour), from
    the raw events since, as they stood at `at`."""

    at: datetime  # when the report was read
    updated: datetime | None  # when the rollup last ran (None: never)
    live_from: datetime | None  # None: nothing rolled up yet, every hour counted from the raw events


async def counted() -> Counted:
    updated = await updated_at()
    return Counted(at=clock.now(), updated=updated, live_from=live_from(updated))
