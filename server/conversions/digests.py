"""The daily digests of conversions: to each advertiser, what waits for their review; to each
publisher, what was approved, rejected (with the reason) or reversed since their previous digest.

Read-only: a digest reads conversions and writes one outbox row per person (in its own
transaction, the digest being the event), never money. Each goes at most once a UTC day per
person (its dedupe_key), and only when it has something to say, so running the job twice the same
day sends nothing more."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from piccolo.query.functions.aggregate import Count, Sum

from server.accounts import notify
from server.conversions.tables import Conversion, ConversionStatus
from server.core import clock, db
from server.core.hours import utc
from server.mail import outbox
from server.mail.tables import MailOutbox

FIRST_WINDOW = timedelta(hours=24)  # a person's first digest looks back this far
LONGEST_WINDOW = timedelta(days=7)  # and none further (a worker that was down for weeks)
DETAIL_LINES = 10  # conversions listed one by one; the counts and sums cover all
CAMPAIGN_LINES = 10
DECIDED = (ConversionStatus.approved.value, ConversionStatus.rejected.value, ConversionStatus.reversed.value)


def utc_day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()


async def _already(key: str) -> bool:
    return await MailOutbox.exists().where(MailOutbox.dedupe_key == key)


async def _since(kind: str, user_id: int, now: datetime) -> datetime:
    """The end of the person's previous digest of this kind (its outbox row's creation), else a day ago."""
    row = (
        await MailOutbox.select(MailOutbox.created_at)
        .where(MailOutbox.kind == kind, MailOutbox.user == user_id, MailOutbox.created_at < now)
        .order_by(MailOutbox.created_at, ascending=False)
        .first()
    )
    if row is None:
        return now - FIRST_WINDOW
    return max(utc(row["created_at"]), now - LONGEST_WINDOW)


# --- advertisers: what waits for their review ------------------------------------------------------


@dataclass
class Waiting:
    held: int = 0
    pending: int = 0


async def review_digests(now: datetime | None = None) -> int:
    """Write today's review digest to every advertiser with conversions held by a fraud rule (they
    wait for the advertiser's decision), or with conversions reported since their previous digest
    that they may still reject before the hold ends. The number of digests written."""
    now = now or clock.now()
    rows = await (
        Conversion.select(
            Conversion.campaign.advertiser.as_alias("advertiser"),
            Conversion.campaign.as_alias("campaign"),
            Conversion.campaign.name.as_alias("campaign_name"),
            Conversion.currency,
            Conversion.held,
            Count(alias="n"),
            Sum(Conversion.advertiser_amount_minor, alias="total"),
        )
        .where(Conversion.status == ConversionStatus.pending.value)
        .group_by(
            Conversion.campaign.advertiser,
            Conversion.campaign,
            Conversion.campaign.name,
            Conversion.currency,
            Conversion.held,
        )
    )
    by_advertiser: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_advertiser[row["advertiser"]].append(row)
    written = 0
    for advertiser_id in sorted(by_advertiser):
        if await _review_digest(advertiser_id, by_advertiser[advertiser_id], now):
            written += 1
    return written


async def _review_digest(advertiser_id: int, rows: list[dict[str, Any]], now: datetime) -> bool:
    key = f"review_digest:{advertiser_id}:{utc_day(now)}"
    if await _already(key):
        return False
    since = await _since("review_digest", advertiser_id, now)
    new = await Conversion.count().where(
        Conversion.status == ConversionStatus.pending.value,
        Conversion.campaign.advertiser == advertiser_id,
        Conversion.created_at >= since,
        Conversion.created_at < now,
    )
    held = sum(r["n"] for r in rows if r["held"])
    if not held and not new:
        return False
    campaigns: dict[int, dict[str, Any]] = {}
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        line = campaigns.setdefault(r["campaign"], {"name": r["campaign_name"], "held": 0, "pending": 0})
        line["held" if r["held"] else "pending"] += r["n"]
        totals[r["currency"]] += r["total"] or 0
    lines = sorted(campaigns.values(), key=lambda c: (-(c["held"] + c["pending"]), c["name"].lower()))
    context = {
        "held_count": held,
        "new_count": new,
        "pending_count": sum(r["n"] for r in rows),
        "totals": [{"currency": c, "amount_minor": totals[c]} for c in sorted(totals)],
        "campaigns": lines[:CAMPAIGN_LINES],
        "more_campaigns": max(len(lines) - CAMPAIGN_LINES, 0),
        "review_url": outbox.link("/advertiser/review"),
        "conversions_url": outbox.link("/advertiser/conversions?status=pending"),
    }
    async with db.transaction():
        return await notify.send("review_digest", advertiser_id, context, dedupe_key=key, now=now) is not None


# --- publishers: what was decided ----------------------------------------------------------------


def _decided_between(since: datetime, now: datetime) -> Any:
    """Approved (by approved_at), rejected or reversed (by changed_at, which the database stamps at
    the change of status) in [since, now)."""
    approved = (
        (Conversion.status == ConversionStatus.approved.value)
        & (Conversion.approved_at >= since)
        & (Conversion.approved_at < now)
    )
    undone = (
        Conversion.status.is_in([ConversionStatus.rejected.value, ConversionStatus.reversed.value])
        & (Conversion.changed_at >= since)
        & (Conversion.changed_at < now)
    )
    return approved | undone


async def conversions_digests(now: datetime | None = None) -> int:
    """Write today's digest to every publisher with conversions approved, rejected or reversed since
    their previous one. The number of digests written."""
    now = now or clock.now()
    candidates = await (
        Conversion.select(Conversion.publisher).where(_decided_between(now - LONGEST_WINDOW, now)).distinct()
    )
    written = 0
    for publisher_id in sorted(r["publisher"] for r in candidates):
        if await _conversions_digest(publisher_id, now):
            written += 1
    return written


async def _conversions_digest(publisher_id: int, now: datetime) -> bool:
    key = f"conversions_digest:{publisher_id}:{utc_day(now)}"
    if await _already(key):
        return False
    since = await _since("conversions_digest", publisher_id, now)
    window = _decided_between(since, now)
    sums = await (
        Conversion.select(
            Conversion.status,
            Conversion.currency,
            Count(alias="n"),
            Sum(Conversion.publisher_amount_minor, alias="total"),
        )
        .where(Conversion.publisher == publisher_id, window)
        .group_by(Conversion.status, Conversion.currency)
    )
    if not sums:
        return False
    details = await (
        Conversion.select(
            Conversion.id,
            Conversion.status,
            Conversion.status_reason,
            Conversion.currency,
            Conversion.publisher_amount_minor,
            Conversion.converted_at,
            Conversion.campaign.name.as_alias("campaign_name"),
        )
        .where(Conversion.publisher == publisher_id, window)
        .order_by(Conversion.id, ascending=False)
        .limit(DETAIL_LINES)
    )
    totals = {
        status: [
            {"currency": r["currency"], "count": r["n"], "amount_minor": r["total"] or 0}
            for r in sorted(sums, key=lambda r: r["currency"])
            if r["status"] == status
        ]
        for status in DECIDED
    }
    count = sum(r["n"] for r in sums)
    context = {
        "approved": totals[ConversionStatus.approved.value],
        "rejected": totals[ConversionStatus.rejected.value],
        "reversed": totals[ConversionStatus.reversed.value],
        "lines": [
            {
                "status": d["status"],
                "campaign_name": d["campaign_name"],
                "amount_minor": d["publisher_amount_minor"],
                "currency": d["currency"],
                "reason": d["status_reason"],
                "converted_at": utc(d["converted_at"]),
            }
            for d in details
        ],
        "more_lines": max(count - len(details), 0),
        "conversions_url": outbox.link("/publisher/conversions"),
    }
    async with db.transaction():
        return await notify.send("conversions_digest", publisher_id, context, dedupe_key=key, now=now) is not None
