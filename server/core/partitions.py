"""The raw event tables' day partitions on PostgreSQL (migrations/…_partitions.py made them):
created ahead of the days they hold, and dropped whole once retention lets them go. SQLite keeps
one plain table per event: nothing here runs there.

A partition holds one UTC day and is named `{table}_pYYYYMMDD`; a DEFAULT partition takes any row
no day partition holds (a clock far off, a worker that was down longer than it creates ahead), so
an insert never fails. Every change runs under one advisory lock, checks what exists first, and
gives up after LOCK_TIMEOUT rather than queue the click writer behind it (creating or dropping a
partition locks the parent table for a moment): two workers at once, or a run cut short, leave
the same partitions as one run, and the next run finishes the work."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from server.core import db

log = logging.getLogger("affnet.partitions")

# The partitioned tables and the time each is partitioned by.
PARTITIONED = {"click": "clicked_at", "impression": "viewed_at"}
# Indexes each partition declares itself: a view's offer is unique per day (a partitioned table's
# unique key must hold its partition key, and two beacons of one offer differ in viewed_at).
PER_PARTITION = {"impression": ["CREATE UNIQUE INDEX IF NOT EXISTS {partition}_offer ON {partition} (offer)"]}
# Days created ahead of today. A week: the worker may be down that long before rows reach DEFAULT.
AHEAD_DAYS = 7
LOCK_TIMEOUT = "5s"
_LOCK = 7_301_016  # the advisory lock that serialises partition changes


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


@dataclass
class Changed:
    created: list[str] = field(default_factory=list)
    moved: int = 0  # rows moved out of a DEFAULT partition into their day's
    dropped: list[str] = field(default_factory=list)
    deleted: int = 0  # rows deleted from a DEFAULT partition
    skipped: bool = False  # a lock was not free within LOCK_TIMEOUT: nothing changed, the next run does it


async def _locked(changed: Changed, work: Callable[[Any], Awaitable[None]]) -> Changed:
    """Run `work` on a transaction's connection holding the partitions' lock. A lock that is not
    free within LOCK_TIMEOUT (another worker's run, a long query on a partition) undoes the run and
    marks it skipped rather than wait: the click writer must not queue behind it."""
    from asyncpg.exceptions import LockNotAvailableError

    try:
        async with db.transaction() as txn:
            conn = txn.connection  # type: ignore[attr-defined]
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            await work(conn)
    except LockNotAvailableError as exc:
        log.warning("partitions: a lock was busy for %s (%s); the next run tries again", LOCK_TIMEOUT, exc)
        return Changed(skipped=True)
    return changed


async def days_of(conn: Any, table: str) -> dict[date, str]:
    """The day partitions of `table` that exist, by day."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass",
        table,
    )
    found = {}
    for r in rows:
        m = re.fullmatch(rf"{table}_p(\d{{8}})", r["relname"])
        if m:
            found[datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC).date()] = r["relname"]
    return found


async def _create(conn: Any, table: str, day: date, has_rows: bool) -> int:
    """Make `day`'s partition; rows DEFAULT holds for that day move into it first (attaching a
    partition whose rows DEFAULT still holds would fail). The number of rows moved."""
    name, key, default = partition_name(table, day), PARTITIONED[table], f"{table}_default"
    start, end = day_start(day), day_start(day + timedelta(days=1))
    bounds = f"FROM ('{start:%Y-%m-%d} 00:00:00+00') TO ('{end:%Y-%m-%d} 00:00:00+00')"
    moved = 0
    if not has_rows:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES {bounds}")
    else:
        await conn.execute(f"LOCK TABLE {default} IN EXCLUSIVE MODE")  # no new row for the day meanwhile
        await conn.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)")
        status = await conn.execute(
            f"WITH moved AS (DELETE FROM {default} WHERE {key} >= $1 AND {key} < $2 RETURNING *) "  # noqa: S608
            f"INSERT INTO {name} SELECT * FROM moved",
            start,
            end,
        )
        moved = int(status.split()[-1])
    for ddl in PER_PARTITION.get(table, []):
        await conn.execute(ddl.format(partition=name))
    if has_rows:  # attaching builds the parent's indexes and constraints on it
        await conn.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {bounds}")
    return moved


async def create_ahead(today: date, ahead: int = AHEAD_DAYS) -> Changed:
    """Yesterday's to `ahead` days' partitions of every event table, and one for each day whose
    rows wait in DEFAULT (moved into it). Idempotent."""
    changed = Changed()
    if db.is_sqlite():
        return changed

    async def work(conn: Any) -> None:
        for table, key in PARTITIONED.items():
            existing = await days_of(conn, table)
            waiting = {
                r["day"]
                for r in await conn.fetch(
                    f"SELECT DISTINCT ({key} AT TIME ZONE 'UTC')::date AS day FROM {table}_default"  # noqa: S608
                )
            }
            wanted = {today + timedelta(days=n) for n in range(-1, ahead + 1)} | waiting
            for day in sorted(wanted - set(existing)):
                changed.moved += await _create(conn, table, day, day in waiting)
                changed.created.append(partition_name(table, day))

    return await _locked(changed, work)


async def drop_before(floor: datetime) -> Changed:
    """Drop every day partition that ends at or before `floor`, and delete DEFAULT's rows before it."""
    changed = Changed()

    async def work(conn: Any) -> None:
        for table, key in PARTITIONED.items():
            for day, name in sorted((await days_of(conn, table)).items()):
                if day_start(day + timedelta(days=1)) <= floor:
                    await conn.execute(f"DROP TABLE {name}")
                    changed.dropped.append(name)
            status = await conn.execute(f"DELETE FROM {table}_default WHERE {key} < $1", floor)  # noqa: S608
            changed.deleted += int(status.split()[-1])

    return await _locked(changed, work)
