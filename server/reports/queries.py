"""Grouped sums over the hourly tables (the rollups, and the CPC and CPM earning hours) for one
owner and period: the one shape every dashboard query has, so each stays a single indexed read.

Only this module's constants go into a statement: sources, measures and dimensions are picked
from the dictionaries below by key, and every value (owner, times) is a bound parameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


async def grouped(
    source: str, owner: str, owner_id: int, period: Period, dims: Sequence[str] = (), *, only_invalid: bool = False
) -> list[dict[str, Any]]:
    """The source's measures summed per (dims…, currency) over the period, for one owner. Rows
    where every measure is zero are left out."""
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
    select = ", ".join([*keys, "currency", *(f"{sql} AS {name}" for name, sql in measures.items())])
    group = ", ".join([*(k.rsplit(" AS ", 1)[0] for k in keys), "currency"])
    if only_invalid:
        where += f" AND reason <> '{VALID}'"
    sql = f"SELECT {select} FROM {table} WHERE {where} GROUP BY {group}"  # noqa: S608  (constants only)
    rows = await RollupCursor.raw(sql, owner_id, period.start_utc, period.end_utc)
    out = []
    for row in rows:
        for name in measures:
            row[name] = int(row[name] or 0)  # SUM of a BIGINT is a Decimal on PostgreSQL
        if any(row[name] for name in measures):
            out.append(row)
    return out


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
