"""A publisher's own traffic row by row, newest first and a page at a time: their clicks (with the
reason each is or is not billed) and their conversions (with their payout and the sub-IDs of the
click that brought them). Read-only, for GET /api/v1/publisher/clicks and /conversions.

What a publisher never gets here: a visitor's hash (no IP is stored at all), the advertiser's
price, the network's margin, the sale amount or the advertiser's order id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.campaigns.tables import SUB_NAMES
from server.conversions.tables import Conversion
from server.tracking.tables import Click


@dataclass(frozen=True, slots=True)
class PublisherClick:
    id: int
    click_id: str
    clicked_at: datetime
    campaign_id: int
    link_id: int
    slot_id: int | None
    sub1: str
    sub2: str
    sub3: str
    sub4: str
    sub5: str
    reason: str
    referrer_host: str
    ua_family: str
    country: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PublisherClick:
        return cls(**row)


@dataclass(frozen=True, slots=True)
class PublisherConversionRow:
    """One of the publisher's conversions with their payout and their click's sub-IDs ("" while the
    click row is not stored yet)."""

    id: int
    campaign_id: int
    campaign_name: str
    goal_name: str
    currency: str
    payout_minor: int
    status: str
    status_reason: str
    source: str
    click_id: str
    clicked_at: datetime
    converted_at: datetime
    hold_until: datetime
    subs: dict[str, str]


async def clicks_of(
    publisher_id: int,
    *,
    limit: int,
    before_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    campaign_id: int | None = None,
    link_id: int | None = None,
    reason: str | None = None,
    sub1: str | None = None,
) -> list[PublisherClick]:
    """Up to `limit` of the publisher's clicks, by id descending, below `before_id` when given.
    `since` is included, `until` excluded."""
    query = Click.select(
        Click.id,
        Click.click_id,
        Click.clicked_at,
        Click.campaign.as_alias("campaign_id"),
        Click.link.as_alias("link_id"),
        Click.slot.as_alias("slot_id"),
        *(getattr(Click, s) for s in SUB_NAMES),
        Click.reason,
        Click.referrer_host,
        Click.ua_family,
        Click.country,
    ).where(Click.publisher == publisher_id)
    if before_id is not None:
        query = query.where(Click.id < before_id)
    if since is not None:
        query = query.where(Click.clicked_at >= since)
    if until is not None:
        query = query.where(Click.clicked_at < until)
    if campaign_id is not None:
        query = query.where(Click.campaign == campaign_id)
    if link_id is not None:
        query = query.where(Click.link == link_id)
    if reason is not None:
        query = query.where(Click.reason == reason)
    if sub1 is not None:
        query = query.where(Click.sub1 == sub1)
    rows = await query.order_by(Click.id, ascending=False).limit(limit)
    return [PublisherClick.from_row(row) for row in rows]


async def conversions_page(
    publisher_id: int,
    *,
    limit: int,
    before_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    campaign_id: int | None = None,
) -> list[PublisherConversionRow]:
    """Up to `limit` of the publisher's conversions, by id descending, below `before_id` when given;
    `since` (included) and `until` (excluded) bound when they converted."""
    query = Conversion.select(
        Conversion.id,
        Conversion.campaign.id.as_alias("campaign_id"),
        Conversion.campaign.name.as_alias("campaign_name"),
        Conversion.goal.name.as_alias("goal_name"),
        Conversion.currency,
        Conversion.publisher_amount_minor.as_alias("payout_minor"),
        Conversion.status,
        Conversion.status_reason,
        Conversion.source,
        Conversion.click_id,
        Conversion.clicked_at,
        Conversion.converted_at,
        Conversion.hold_until,
    ).where(Conversion.publisher == publisher_id)
    if before_id is not None:
        query = query.where(Conversion.id < before_id)
    if since is not None:
        query = query.where(Conversion.converted_at >= since)
    if until is not None:
        query = query.where(Conversion.converted_at < until)
    if status is not None:
        query = query.where(Conversion.status == status)
    if campaign_id is not None:
        query = query.where(Conversion.campaign == campaign_id)
    rows = await query.order_by(Conversion.id, ascending=False).limit(limit)
    click_ids = sorted({r["click_id"] for r in rows})
    subs: dict[str, dict[str, str]] = {}
    if click_ids:
        for click in await Click.select(Click.click_id, *(getattr(Click, s) for s in SUB_NAMES)).where(
            Click.click_id.is_in(click_ids), Click.publisher == publisher_id
        ):
            subs[click["click_id"]] = {s: click[s] for s in SUB_NAMES}
    empty = dict.fromkeys(SUB_NAMES, "")
    return [PublisherConversionRow(**row, subs=subs.get(row["click_id"], empty)) for row in rows]
