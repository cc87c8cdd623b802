"""Grouped sums over the hourly tables (the rollups, and the CPC and CPM earning hours) for one
owner and period: the one shape every dashboard query has, so each stays a single indexed read.

The rollups lag the events by up to five minutes (server/reports/rollup.py): the hours from
`live_from` on are counted from the raw events instead, in the rollups' own row shape, so a click
or conversion is in the reports as soon as it is stored (as it is on the dashboards).

Only this module's constants go into a statement: sources, measures and dimensions are picked
from the dictionaries below by key, and every value (owner, times) is a bound parameter."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from server.reports import rollup
from server.reports.period import Period
from server.reports.tables import RollupCursor

VALID = "valid"
# Measures per source, summed per group.
TRAFFIC = {
    "clicks": "SUM(CASE WHEN reason = 'valid' THEN clicks ELSE 0 END)",
    "invalid_clicks": "SUM(CASE WHEN reason <> 'valid' THEN clicks ELSE 0 END)",
    "impressions": "SUM(CASE WHEN reason = 'valid' THEN impressions ELSE 0 END)",
    "invalid_impressions": "SUM(CASE WHEN reason <> 'valid' THEN impressions ELSE 0 END)",
}
# traffic_slice_hour keeps valid and invalid apart instead of by reason.
SLICE = {name: f"SUM({name})" for name in TRAFFIC}
_COUNTED = "status IN ('pending', 'approved', 'released')"
_CHARGED = "status IN ('approved', 'released')"
CONVERSIONS = {
    "conversions": f"SUM(CASE WHEN {_COUNTED} THEN conversions ELSE 0 END)",
    # Of those, the ones the pixel reported: fired from a browser, so anyone with a click id can.
    "pixel_conversions": f"SUM(CASE WHEN {_COUNTED} THEN pixel_conversions ELSE 0 END)",
    "approved": f"SUM(CASE WHEN {_CHARGED} THEN conversions ELSE 0 END)",
    "rejected": "SUM(CASE WHEN status = 'rejected' THEN conversions ELSE 0 END)",
    "reversed": "SUM(CASE WHEN status = 'reversed' THEN conversions ELSE 0 END)",
    # The publisher's share: pending until released, then confirmed (available or already paid).
    "payout_pending": "SUM(CASE WHEN status IN ('pending', 'approved') THEN payout_minor ELSE 0 END)",
    "payout_confirmed": "SUM(CASE WHEN status = 'released' THEN payout_minor ELSE 0 END)",
    # The advertiser's price: charged once approved; pending ones are not charged yet.
    "price_charged": f"SUM(CASE WHEN {_CHARGED} THEN price_minor ELSE 0 END)",
    "price_pending": "SUM(CASE WHEN status = 'pending' THEN price_minor ELSE 0 END)",
    "sales": f"SUM(CASE WHEN {_CHARGED} THEN sale_minor ELSE 0 END)",
    "margin": f"SUM(CASE WHEN {_CHARGED} THEN margin_minor ELSE 0 END)",
}
# CPC and CPM hours (click_earning, impression_earning): waiting = priced, not charged yet;
# approved = charged, in the publisher's hold; released = available to the publisher.
EARNINGS = {
    "payout_pending": "SUM(CASE WHEN status IN ('waiting', 'approved') THEN payout_minor ELSE 0 END)",
    "payout_confirmed": "SUM(CASE WHEN status = 'released' THEN payout_minor ELSE 0 END)",
    "price_charged": "SUM(CASE WHEN status IN ('approved', 'released') THEN price_minor ELSE 0 END)",
    "price_pending": "SUM(CASE WHEN status = 'waiting' THEN price_minor ELSE 0 END)",
    "margin": "SUM(CASE WHEN status IN ('approved', 'released') THEN margin_minor ELSE 0 END)",
}
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "traffic": ("traffic_hour", TRAFFIC),
    "conversions": ("conversion_hour", CONVERSIONS),
    "click_earnings": ("click_earning", EARNINGS),
    "impression_earnings": ("impression_earning", EARNINGS),
}
# Traffic is read from the narrowest rollup holding the dimensions asked for: the full-grain
# traffic_hour has about a row per click for a big publisher (bench/report_dashboard.py).
_BY_CAMPAIGN = frozenset({"hour", "campaign", "reason", "publisher"})
_SLICED = {"sub1": "key", "slot": "CAST(key AS INTEGER)", "country": "key"}
DIMENSIONS = {
    "hour": "hour",
    "campaign": "campaign",
    "sub1": "sub1",
    "slot": "slot",
    "country": "country",
    "reason": "reason",
    "goal": "goal",
    "publisher": "publisher",
    "status": "status",
}
OWNERS = {
    "publisher": "publisher = {}",
    # The advertiser's campaigns: each source is indexed by (campaign, hour).
    "advertiser": "campaign IN (SELECT id FROM campaign WHERE advertiser = {})",
    "campaign": "campaign = {}",
}
# The rollups that have a raw equivalent (the earning hours are written as they are priced), and
# the owner conditions on the raw tables ({t}: the raw table's alias).
_RAW = {"traffic": rollup.raw_traffic_sql, "conversions": rollup.raw_conversion_sql}
_RAW_OWNERS = {
    "publisher": "{t}.publisher = {}",
    "advertiser": "{t}.campaign IN (SELECT id FROM campaign WHERE advertiser = {})",
    "campaign": "{t}.campaign = {}",
}


async def grouped(
    source: str,
    owner: str,
    owner_id: int,
    period: Period,
    dims: Sequence[str] = (),
    *,
    live_from: datetime | None,
    only_invalid: bool = False,
) -> list[dict[str, Any]]:
    """The source's measures summed per (dims…, currency) over the period, for one owner: from
    the rollups before `live_from` (rollup.live_from: None when nothing is rolled up yet), from
    the raw events since. Rows where every measure is zero are left out."""
    start, end = period.start_utc, period.end_utc
    boundary = end
    if source in _RAW:
        boundary = start if live_from is None else min(end, max(start, live_from))
    row_sets = []
    if boundary > start:
        row_sets.append(await _rolled(source, owner, owner_id, start, boundary, dims, only_invalid))
    if end > boundary:
        row_sets.append(await _live(source, owner, owner_id, boundary, end, dims, only_invalid))
    measures = SOURCES[source][1]
    summed = merge(lambda r: (*(r[d] for d in dims), r["currency"]), *row_sets)
    return [row for row in summed.values() if any(row.get(name) for name in measures)]


async def _rolled(
    source: str,
    owner: str,
    owner_id: int,
    start: datetime,
    end: datetime,
    dims: Sequence[str],
    only_invalid: bool,
) -> list[dict[str, Any]]:
    table, measures = SOURCES[source]
    keys = [f"{DIMENSIONS[d]} AS {d}" for d in dims]
    where = f"{OWNERS[owner]} AND hour >= {{}} AND hour < {{}}"
    sliced = [d for d in dims if d != "hour"]
    if source == "traffic" and set(dims) <= _BY_CAMPAIGN:
        table = "traffic_campaign_hour"
    elif (
        source == "traffic" and owner == "publisher" and len(sliced) == 1 and sliced[0] in _SLICED and not only_invalid
    ):
        table, measures = "traffic_slice_hour", SLICE
        keys = [f"{_SLICED[d]} AS {d}" if d in _SLICED else f"{DIMENSIONS[d]} AS {d}" for d in dims]
        where += f" AND dim = '{sliced[0]}'"
    if only_invalid:
        where += f" AND reason <> '{VALID}'"
    return await _sums(table, keys, measures, where, owner_id, start, end)


async def _live(
    source: str,
    owner: str,
    owner_id: int,
    start: datetime,
    end: datetime,
    dims: Sequence[str],
    only_invalid: bool,
) -> list[dict[str, Any]]:
    """The same sums from the raw events of [start, end), counted as the rollup would count them."""
    raw = _RAW[source](_RAW_OWNERS[owner])
    args = (start, end, owner_id) * (2 if source == "traffic" else 1)
    where = f"reason <> '{VALID}'" if only_invalid else "1 = 1"
    keys = [f"{DIMENSIONS[d]} AS {d}" for d in dims]
    return await _sums(f"({raw}) live", keys, SOURCES[source][1], where, *args)


async def _sums(table: str, keys: list[str], measures: dict[str, str], where: str, *args: Any) -> list[dict[str, Any]]:
    select = ", ".join([*keys, "currency", *(f"{sql} AS {name}" for name, sql in measures.items())])
    group = ", ".join([*(k.rsplit(" AS ", 1)[0] for k in keys), "currency"])
    sql = f"SELECT {select} FROM {table} WHERE {where} GROUP BY {group}"  # noqa: S608  (constants only)
    rows = await RollupCursor.raw(sql, *args)
    for row in rows:
        for name in measures:
            row[name] = int(row[name] or 0)  # SUM of a BIGINT is a Decimal on PostgreSQL
    return rows


async def names(key: Any, name: Any, ids: set[int]) -> dict[int, str]:
    """What to call the rows whose `key` column is in `ids` (both columns of one table): one read."""
    if not ids:
        return {}
    rows = await key._meta.table.select(key.as_alias("k"), name.as_alias("name")).where(key.is_in(sorted(ids)))
    return {r["k"]: r["name"] for r in rows}


def merge(key_of: Any, *row_sets: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Rows of several sources added together per key (`key_of(row)`), measure by measure."""
    merged: dict[Any, dict[str, Any]] = {}
    for rows in row_sets:
        for row in rows:
            key = key_of(row)
            into = merged.setdefault(key, {})
            for name, value in row.items():
                if isinstance(value, int) and not isinstance(value, bool) and name not in DIMENSIONS:
                    into[name] = into.get(name, 0) + value
                else:
                    into.setdefault(name, value)
    return merged
