"""The traffic figures pages show (a publisher's clicks by campaign and sub-ID, a campaign's by
publisher, a slot's views and clicks), read from the hourly rollups.

Every hour the incremental rollup has passed is read from the rollups (traffic_hour,
traffic_campaign_hour): at volume a page never scans raw events, and raw events past retention
are gone anyway. Only the hours since (the current one, and the rollup's overlap: at most about
an hour and a quarter) are counted from the raw clicks and impressions, on their day's
partition, so a click shows on the pages as soon as it is stored, as before. A period starts at
the UTC hour its first moment falls in: the rollups count whole hours.

Statements hold constants only; every value is bound."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from server.accounts.tables import User
from server.ads.tables import AdSlot
from server.campaigns.tables import Campaign
from server.core import clock
from server.core.hours import hour_of, hour_sql, utc
from server.reports import rollup
from server.reports.queries import names
from server.reports.tables import RollupCursor

DEFAULT_DAYS = 30  # what the dashboards show when no period is asked for
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before any event affnet stores


async def _split(since: datetime) -> tuple[datetime, datetime]:
    """[start, boundary) is read from the rollups, boundary on from the raw events."""
    start = hour_of(since)
    boundary = rollup.live_from(await rollup.updated_at()) or start
    return start, max(start, boundary)


def _add(into: dict[tuple, int], rows: Iterable[dict[str, Any]], key: tuple[str, ...], measure: str) -> None:
    for row in rows:
        into[tuple(row[k] for k in key)] += int(row[measure] or 0)


async def _counts(
    rolled_sql: str, raw_sql: str, since: datetime, key: tuple[str, ...], args: tuple[Any, ...]
) -> dict[tuple, int]:
    """The measure per key: rolled-up hours in [start, boundary), raw events from boundary on."""
    start, boundary = await _split(since)
    counts: dict[tuple, int] = defaultdict(int)
    if boundary > start:
        _add(counts, await RollupCursor.raw(rolled_sql, *args, start, boundary), key, "n")
    _add(counts, await RollupCursor.raw(raw_sql, *args, boundary), key, "n")
    return {k: n for k, n in counts.items() if n}


def _since(since: datetime | None) -> datetime:
    return since or clock.now() - timedelta(days=DEFAULT_DAYS)


async def click_stats(
    publisher_id: int, *, since: datetime | None = None, campaign_id: int | None = None
) -> list[dict[str, Any]]:
    """One publisher's clicks by campaign, sub1 and reason (valid or why not), by campaign id."""
    where, args = "publisher = {}", (publisher_id,)
    if campaign_id is not None:
        where, args = "publisher = {} AND campaign = {}", (publisher_id, campaign_id)
    counts = await _counts(
        f"SELECT campaign, sub1, reason, SUM(clicks) AS n FROM traffic_hour WHERE {where} "  # noqa: S608
        "AND hour >= {} AND hour < {} GROUP BY campaign, sub1, reason",
        f"SELECT campaign, sub1, reason, COUNT(*) AS n FROM click WHERE {where} "  # noqa: S608
        "AND clicked_at >= {} GROUP BY campaign, sub1, reason",
        _since(since),
        ("campaign", "sub1", "reason"),
        args,
    )
    titles = await names(Campaign.id, Campaign.name, {k[0] for k in counts})
    return [
        {"campaign_id": c, "campaign_name": titles.get(c, f"#{c}"), "sub1": s, "reason": r, "clicks": n}
        for (c, s, r), n in sorted(counts.items())
    ]


async def campaign_click_stats(campaign_id: int, since: datetime | None = None) -> list[dict[str, Any]]:
    """One campaign's clicks by publisher and reason, by email (the advertiser's view, which names
    publishers by `publisher_id` and their public profile: never by the email, personal data)."""
    counts = await _counts(
        "SELECT publisher, reason, SUM(clicks) AS n FROM traffic_campaign_hour WHERE campaign = {} "
        "AND hour >= {} AND hour < {} GROUP BY publisher, reason",
        "SELECT publisher, reason, COUNT(*) AS n FROM click WHERE campaign = {} AND clicked_at >= {} "
        "GROUP BY publisher, reason",
        _since(since),
        ("publisher", "reason"),
        (campaign_id,),
    )
    emails = await names(User.id, User.email, {k[0] for k in counts})
    rows = [
        {"publisher_id": p, "publisher_email": emails.get(p, ""), "reason": r, "clicks": n}
        for (p, r), n in counts.items()
    ]
    return sorted(rows, key=lambda r: (r["publisher_email"], r["reason"]))


async def valid_clicks_ever(campaign_id: int) -> int:
    """A campaign's valid clicks since it began: the rollups (kept past raw-event retention) and the
    raw clicks since. Seeds the click counter of a CPC campaign's total budget when Redis lost it
    (server/tracking/counting.py)."""
    counts = await _counts(
        "SELECT COALESCE(SUM(clicks), 0) AS n FROM traffic_campaign_hour WHERE campaign = {} AND reason = {} "
        "AND hour >= {} AND hour < {}",
        "SELECT COUNT(*) AS n FROM click WHERE campaign = {} AND reason = {} AND clicked_at >= {}",
        EPOCH,
        (),
        (campaign_id, "valid"),
    )
    return sum(counts.values())


async def _slot_publisher(slot_id: int) -> int:
    rows = await RollupCursor.raw("SELECT publisher FROM ad_slot WHERE id = {}", slot_id)
    return rows[0]["publisher"] if rows else 0


async def slot_stats(slot_id: int, since: datetime) -> dict[str, int]:
    """Views counted in one ad slot since a moment, by reason ("valid" or why not)."""
    # traffic_hour is indexed by (publisher, hour): the slot's publisher narrows the read.
    counts = await _counts(
        "SELECT reason, SUM(impressions) AS n FROM traffic_hour WHERE publisher = {} AND slot = {} "
        "AND hour >= {} AND hour < {} GROUP BY reason",
        "SELECT reason, COUNT(*) AS n FROM impression WHERE publisher = {} AND slot = {} AND viewed_at >= {} "
        "GROUP BY reason",
        since,
        ("reason",),
        (await _slot_publisher(slot_id), slot_id),
    )
    return {k[0]: n for k, n in counts.items()}


async def slot_click_stats(slot_id: int, since: datetime) -> dict[str, int]:
    """Clicks through offers shown in one ad slot since a moment, by reason."""
    counts = await _counts(
        "SELECT reason, SUM(clicks) AS n FROM traffic_hour WHERE publisher = {} AND slot = {} "
        "AND hour >= {} AND hour < {} GROUP BY reason",
        "SELECT reason, COUNT(*) AS n FROM click WHERE publisher = {} AND slot = {} AND clicked_at >= {} "
        "GROUP BY reason",
        since,
        ("reason",),
        (await _slot_publisher(slot_id), slot_id),
    )
    return {k[0]: n for k, n in counts.items()}


async def view_slots(publisher_id: int, campaign_id: int, start: datetime, end: datetime) -> dict[datetime, list[str]]:
    """The names of the publisher's slots that showed the campaign's valid views, per UTC hour in
    [start, end), each hour's by name."""
    first, boundary = await _split(start)
    boundary = min(boundary, end)
    found: set[tuple[datetime, int]] = set()
    if boundary > first:
        rows = await RollupCursor.raw(
            "SELECT hour, slot FROM traffic_hour WHERE publisher = {} AND campaign = {} AND reason = 'valid' "
            "AND impressions > 0 AND hour >= {} AND hour < {} GROUP BY hour, slot",
            publisher_id,
            campaign_id,
            first,
            boundary,
        )
        found |= {(utc(r["hour"]), r["slot"]) for r in rows}
    if end > boundary:
        bucket = hour_sql("viewed_at")
        rows = await RollupCursor.raw(
            f"SELECT {bucket} AS hour, slot FROM impression WHERE campaign = {{}} AND publisher = {{}} "  # noqa: S608
            "AND reason = 'valid' AND viewed_at >= {} AND viewed_at < {} GROUP BY 1, slot",
            campaign_id,
            publisher_id,
            max(boundary, start),
            end,
        )
        found |= {(utc(r["hour"]), r["slot"]) for r in rows}
    titles = await names(AdSlot.id, AdSlot.name, {slot for _, slot in found})
    by_hour: dict[datetime, list[str]] = {}
    for hour, slot in sorted(found, key=lambda f: (titles.get(f[1], ""), f[1])):
        by_hour.setdefault(hour, []).append(titles.get(slot, f"#{slot}"))
    return by_hour
