"""The self_conversion rule: the visitor who converted is the publisher themself.

A publisher's logged-in session leaves its visitor hash (server/tracking/visitor.py: the day's
keyed hash of the /24 or /48 and the exact User-Agent, the hash every click carries) in
publisher_visitor, once a day per hash (`Sightings` keeps each server process from writing it on
every page). A conversion whose click has one of its own publisher's hashes is held with a
self_conversion flag.

When the rule runs: a conversion may arrive before its click row is stored (clicks are buffered and
written in batches), so the intake cannot decide it. It is decided where money would move instead:
every approval (the job's batches and the advertiser's early approval, server/conversions/approval.py)
screens the conversions it is about to charge in the same transaction, holding the self-conversions
and leaving for a later run those whose click row is not stored yet (within CLICK_ROW_GRACE of the
click; after that the click is taken as never coming, and the rule has nothing to compare). The gap
left: a click that waits longer than that in a server's buffer (Redis away: clicks wait there until
it returns) and whose conversion is approved by hand meanwhile is paid unchecked. The
reconcile job also screens the last SCREEN_DAYS' pending conversions first, so that they appear in
the review queue before their hold ends.

What it can tell: the publisher clicking their own link from the browser and network they use
affnet with, on the same UTC day (hashes of two days never match). What it cannot: another device,
another network or browser, or a publisher who did not open affnet that day."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from server.conversions import rules
from server.conversions.tables import Conversion, ConversionFlag, FlagRule, PublisherVisitor
from server.core import db
from server.core.hours import utc

log = logging.getLogger("affnet.conversions")

# How long after its click a conversion waits for the click row: ten click flushes (0.5 s each). A
# click row still missing then is taken as never coming (nothing to compare; see the module's doc).
CLICK_ROW_GRACE = timedelta(seconds=5)
SCREEN_DAYS = 2
MAX_SIGHTINGS = 200_000  # per process and day: a bound on the memory, not a limit on publishers
_CHUNK = 900  # ids per statement on SQLite (bound parameters)


class Sightings:
    """The (publisher, visitor hash) pairs this process stored today: a publisher's page views
    write their hash once a day, not once a page."""

    def __init__(self) -> None:
        self._day: date | None = None
        self._seen: set[tuple[int, str]] = set()

    def is_new(self, publisher_id: int, visitor_hash: str, day: date) -> bool:
        if day != self._day or len(self._seen) >= MAX_SIGHTINGS:
            self._day, self._seen = day, set()
        key = (publisher_id, visitor_hash)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def forget(self, publisher_id: int, visitor_hash: str) -> None:
        """The write failed: try again on the next page."""
        self._seen.discard((publisher_id, visitor_hash))

    def clear(self) -> None:
        self._day, self._seen = None, set()


async def seen(publisher_id: int, visitor_hash: str, now: datetime) -> None:
    """The publisher's session had this visitor hash today (a second sighting changes nothing)."""
    await PublisherVisitor.raw(
        "INSERT INTO publisher_visitor (publisher, visitor_hash, seen_at) VALUES ({}, {}, {}) ON CONFLICT DO NOTHING",
        publisher_id,
        visitor_hash,
        now,
    )


async def _matches(ids: Sequence[int]) -> list[dict[str, Any]]:
    """For each conversion of `ids`: its click's visitor hash (None: no click row yet) and, when that
    hash is one of its publisher's own, when the publisher was seen with it."""
    sql = (
        "SELECT c.id, c.campaign, c.publisher, c.clicked_at, k.visitor_hash AS click_visitor, "
        "k.clicked_at AS click_at, v.seen_at AS publisher_seen_at FROM conversion c "
        "LEFT JOIN click k ON k.click_id = c.click_id "
        "LEFT JOIN publisher_visitor v ON v.publisher = c.publisher AND v.visitor_hash = k.visitor_hash "
    )
    if not ids:
        return []
    if not db.is_sqlite():
        return await Conversion.raw(sql + "WHERE c.id = ANY({}::bigint[])", list(ids))
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        found += await Conversion.raw(sql + f"WHERE c.id IN ({', '.join('{}' for _ in chunk)})", *chunk)  # noqa: S608
    return found


def evidence(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "click_visitor_hash_prefix": (row["click_visitor"] or "")[:8],
        "clicked_at": utc(row["click_at"]).isoformat() if row["click_at"] else None,
        "publisher_seen_at": utc(row["publisher_seen_at"]).isoformat(),
        "what": "the click's visitor (network and browser, that day) is the publisher's own logged-in session",
    }


async def screen(rows: Sequence[dict[str, Any]], now: datetime) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """Check pending conversions (`rows`, each with an `id`) before they are charged, inside the
    caller's transaction: (the rows that may go on, the ids now held as self-conversions, the ids
    left for later because their click row is not stored yet)."""
    if not rows:
        return [], [], []
    found = {r["id"]: r for r in await _matches([r["id"] for r in rows])}
    selfs: list[dict[str, Any]] = []
    later: list[int] = []
    for row in rows:
        match = found.get(row["id"])
        if match is None:
            continue
        if match["click_visitor"] is None:
            if utc(match["clicked_at"]) > now - CLICK_ROW_GRACE:
                later.append(row["id"])
        elif match["publisher_seen_at"] is not None:
            selfs.append(match)
    selfs = await _switched_on(selfs)
    held = await hold(selfs, now) if selfs else []
    out = set(held) | set(later)
    return [r for r in rows if r["id"] not in out], held, later


async def _switched_on(matches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matches whose campaign has the rule on (self_conversion.enabled: the campaign's, the
    network's or the default): one query per campaign, only for the rare conversions that matched."""
    on: dict[int, bool] = {}
    for campaign_id in sorted({m["campaign"] for m in matches}):
        on[campaign_id] = bool((await rules.knobs_of(campaign_id))["self_conversion.enabled"])
    return [m for m in matches if on[m["campaign"]]]


async def hold(matches: Sequence[dict[str, Any]], now: datetime) -> list[int]:
    """Hold these pending conversions as self-conversions, with their flags: the ids that were still
    pending and not held (those held already keep their flags; a second run adds nothing)."""
    ids = [m["id"] for m in matches]
    changed = {
        r["id"]
        for r in await Conversion.update({Conversion.held: True})
        .where(
            Conversion.id.is_in(ids),
            Conversion.status == "pending",
            Conversion.held.eq(False),
        )
        .returning(Conversion.id)
    }
    flagged = [m for m in matches if m["id"] in changed]
    if flagged:
        await ConversionFlag.insert(
            *(
                ConversionFlag(
                    conversion=m["id"],
                    campaign=m["campaign"],
                    publisher=m["publisher"],
                    rule=FlagRule.self_conversion.value,
                    evidence=json.dumps(evidence(m), sort_keys=True),
                    created_at=now,
                )
                for m in flagged
            )
        )
    return sorted(changed)


async def screen_recent(now: datetime) -> int:
    """Hold the self-conversions among the last SCREEN_DAYS' pending conversions (the reconcile job,
    before it approves anything): they reach the review queue without waiting for their hold."""
    held = 0
    after = 0
    while True:
        rows = await Conversion.raw(
            "SELECT id FROM conversion WHERE status = 'pending' AND NOT held AND converted_at >= {} AND id > {} "
            "ORDER BY id LIMIT 2000",
            now - timedelta(days=SCREEN_DAYS),
            after,
        )
        if not rows:
            return held
        after = rows[-1]["id"]
        selfs = [m for m in await _matches([r["id"] for r in rows]) if m["publisher_seen_at"] is not None]
        selfs = await _switched_on(selfs)
        if selfs:
            async with db.transaction():
                held += len(await hold(selfs, now))
