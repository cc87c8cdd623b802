"""Raw clicks and impressions deleted once nothing needs them any more; the rollups stay.

The floor (raw events before it go) is the earliest of these, each a day start so both engines
drop the same days (PostgreSQL drops the day partitions, SQLite deletes in batches):

- `retention`: RAW_EVENT_RETENTION_DAYS before today (the setting; 0 keeps everything);
- `rolled_up`: the hour the reports' incremental rollup last started, less its overlap: only hours
  rolled up are dropped (nothing at all before the first rollup);
- `nightly_rebuild`: yesterday, which the nightly rebuild reads from the raw events;
- `earnings`: the day of the first closed hour a CPC or CPM campaign has not priced yet (pricing
  an hour reads its events and that day's earlier ones), however old: a campaign waiting for
  funds is priced once it is funded;
- `attribution`: the longest attribution window of a campaign that still takes conversions, and
  a day: a conversion may still come for any click inside it, and its rollup reads the click's
  sub1, slot and country.

Conversions already recorded keep what they need through `converted_click`: before raw clicks
are dropped, the sub1, slot and country of the clicks that converted are copied there, so a
conversion approved or reversed later is rolled up again with the same breakdown.

The floor is recorded (rollup cursor `raw_floor`): the rollups never rebuild an hour before it
from raw events that are gone (server/reports/rollup.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from server.campaigns.tables import Campaign, CampaignStatus, PayoutModel
from server.core import db, partitions
from server.core.hours import utc
from server.earnings import cpc, cpm
from server.earnings.charging import first_goal_terms
from server.reports import rollup
from server.reports.tables import ConvertedClick, RollupCursor

# SQLite deletes this many rows per transaction, so the click writer waits at most one batch.
DELETE_BATCH = 5_000


def _day(moment: datetime) -> datetime:
    return datetime.combine(utc(moment).date(), time(), UTC)


@dataclass
class Retained:
    floor: datetime | None  # raw events before it are gone; None: nothing may go yet
    limits: dict[str, datetime] = field(default_factory=dict)  # each rule's floor, by name
    dropped: list[str] = field(default_factory=list)  # PostgreSQL's day partitions dropped
    deleted: int = 0  # rows deleted (SQLite; PostgreSQL's DEFAULT partition)
    kept_conversions: int = 0  # converted clicks' dimensions copied to converted_click
    skipped: bool = False  # PostgreSQL: a partition was busy; the next run drops what is left


async def _unpriced(candidate: datetime) -> datetime | None:
    """The first closed hour before `candidate` a CPC or CPM campaign has not priced yet."""
    found: list[datetime] = []
    for model, hours in ((PayoutModel.cpc.value, cpc.HOURS), (PayoutModel.cpm.value, cpm.HOURS)):
        for campaign_id in await first_goal_terms(model, ()):
            hour = await hours.next_hour(campaign_id, candidate)
            if hour is not None:
                found.append(hour)
    return min(found) if found else None


async def _longest_window() -> int:
    rows = await Campaign.raw(
        "SELECT MAX(attribution_window_days) AS days FROM campaign WHERE status <> {}", CampaignStatus.ended.value
    )
    return int(rows[0]["days"] or 0)


async def floor(now: datetime, retention_days: int) -> Retained:
    """Where raw events may be dropped up to, now, and why there (see the module's rules)."""
    now = utc(now)
    rolled = await rollup.updated_at()
    if retention_days <= 0 or rolled is None:
        return Retained(floor=None)
    limits = {
        "retention": _day(now - timedelta(days=retention_days)),
        "rolled_up": _day(rolled - rollup.OVERLAP),
        "nightly_rebuild": _day(now - timedelta(days=1)),
        "attribution": _day(now - timedelta(days=await _longest_window() + 1)),
    }
    unpriced = await _unpriced(min(limits.values()))
    if unpriced is not None:
        limits["earnings"] = _day(unpriced)
    return Retained(floor=min(limits.values()), limits=limits)


async def _keep_converted(floor: datetime) -> int:
    """Copy the dimensions of the clicks before `floor` that brought a conversion (once each)."""
    before = await ConvertedClick.count()
    await RollupCursor.raw(
        "INSERT INTO converted_click (click_id, sub1, slot, country) "
        "SELECT c.click_id, c.sub1, COALESCE(c.slot, 0), c.country FROM conversion v "
        "JOIN click c ON c.click_id = v.click_id WHERE v.clicked_at < {} AND c.clicked_at < {} "
        "ON CONFLICT (click_id) DO NOTHING",
        floor + timedelta(days=1),  # a conversion's clicked_at is its click's, to the second below
        floor,
    )
    return await ConvertedClick.count() - before


async def _record(moment: datetime) -> datetime:
    """Record the floor; it never moves back (a longer retention set later brings nothing back)."""
    async with db.transaction():
        # Under the rollups' lock: a rebuild running now ends first, any later one sees the floor.
        await rollup.lock_rebuilds()
        recorded = await rollup.raw_floor()
        if recorded is not None and recorded >= moment:
            return recorded
        await RollupCursor.delete().where(RollupCursor.name == rollup.RAW_FLOOR)
        await RollupCursor.insert(RollupCursor(name=rollup.RAW_FLOOR, moment=moment))
    return moment


async def _delete_batches(table: str, column: str, floor: datetime) -> int:
    deleted = 0
    while True:
        async with db.transaction():
            rows = await RollupCursor.raw(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {column} < {{}} LIMIT {DELETE_BATCH}) "  # noqa: S608
                "RETURNING id",
                floor,
            )
        deleted += len(rows)
        if len(rows) < DELETE_BATCH:
            return deleted


async def drop_raw_events(now: datetime, retention_days: int) -> Retained:
    """Drop the raw clicks and impressions before the floor; the rollups are not touched."""
    retained = await floor(now, retention_days)
    if retained.floor is None:
        return retained
    retained.kept_conversions = await _keep_converted(retained.floor)
    # Recorded first: a rollup that starts while the events go already leaves those hours alone.
    retained.floor = await _record(retained.floor)
    if db.is_sqlite():
        for table, column in partitions.PARTITIONED.items():
            retained.deleted += await _delete_batches(table, column, retained.floor)
    else:
        changed = await partitions.drop_before(retained.floor)
        retained.dropped, retained.deleted, retained.skipped = changed.dropped, changed.deleted, changed.skipped
    return retained
