"""A conversion's changes told to its owners (server/webhooks/events.py: the advertiser's and the
publisher's webhooks, the publisher's postbacks), in the transaction of the change.

The callers pass the rows they changed with `advertiser_id` and `publisher`; only those someone
listens to (a set lookup in the outbox's caches) are read again, all in one query, with what the
payloads need: the goal's name and the click's sub-IDs. A click row not written yet (clicks are
buffered for a moment) or dropped by retention gives empty sub-IDs; its click id is always there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from server.conversions.tables import Conversion
from server.core import db
from server.webhooks import events

_COLUMNS = (
    "c.id, c.campaign, c.publisher, k.advertiser AS advertiser_id, g.name AS goal_name, c.click_id, c.txn_id, "
    "c.sale_amount_minor, c.currency, c.advertiser_amount_minor, c.publisher_amount_minor, c.status, "
    "c.status_reason, c.source, c.converted_at, c.hold_until, "
    "COALESCE(l.sub1, '') AS sub1, COALESCE(l.sub2, '') AS sub2, COALESCE(l.sub3, '') AS sub3, "
    "COALESCE(l.sub4, '') AS sub4, COALESCE(l.sub5, '') AS sub5"
)
_FROM = (
    "FROM conversion c JOIN campaign k ON k.id = c.campaign JOIN goal g ON g.id = c.goal "
    "LEFT JOIN click l ON l.click_id = c.click_id"
)
# PostgreSQL: the click is looked up in the days around the conversion's copy of its time (the
# second its id carries), so only those days' partitions are read (as server/reports/rollup.py does).
_NEAR_PG = " AND l.clicked_at >= c.clicked_at - interval '1 day' AND l.clicked_at < c.clicked_at + interval '1 day'"
_CHUNK = 500  # ids per statement on SQLite (bound one by one there)


async def details(ids: Sequence[int]) -> list[dict[str, Any]]:
    """The conversions' payload columns (events.CONVERSION_KEYS), in id order."""
    ids = sorted(set(ids))
    if not ids:
        return []
    if not db.is_sqlite():
        sql = f"SELECT {_COLUMNS} {_FROM}{_NEAR_PG} WHERE c.id = ANY({{}}::bigint[]) ORDER BY c.id"  # noqa: S608
        return await Conversion.raw(sql, ids)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("{}" for _ in chunk)
        rows += await Conversion.raw(f"SELECT {_COLUMNS} {_FROM} WHERE c.id IN ({marks}) ORDER BY c.id", *chunk)  # noqa: S608
    return rows


async def changed(event_type: str, rows: Sequence[Mapping[str, Any]], *, now: datetime | None = None) -> int:
    """Tell the owners of these changed conversions (each with `id`, `advertiser_id` and `publisher`)
    of `event_type`, in the caller's transaction: nothing at all (not even a query) when none of
    them listens. How many messages were queued."""
    watched = await events.watched_conversions(event_type, rows)
    if not watched:
        return 0
    return await events.conversions(event_type, await details([r["id"] for r in watched]), now=now)


async def changed_ids(event_type: str, ids: Sequence[int], *, now: datetime | None = None) -> int:
    """`changed` for conversions known by id alone (a reviewer's decisions, not a hot path): nothing
    when no one has an endpoint or a template at all, else one query for them all."""
    if not ids or not await events.anyone_watching():
        return 0
    rows = await events.watched_conversions(event_type, await details(ids))
    return await events.conversions(event_type, rows, now=now)
