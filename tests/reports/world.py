"""A small network with raw events written as the tracking and ad writers store them, and
conversions as rows, for the rollup and dashboard tests: every event is kept in Python too,
so a test can count them directly and compare with what the reports say."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from server.ads.service import write_impressions
from server.campaigns import service as campaigns
from server.campaigns.tables import Goal, Link
from server.conversions.tables import Conversion
from server.tracking import service as tracking
from tests.ads.factories import ad_campaign, join, publisher, slot
from tests.tracking.factories import campaign_with_link

BASE = datetime(2026, 11, 1, tzinfo=UTC)
_seq = itertools.count(1)


@dataclass
class Event:
    kind: str  # click, impression, conversion
    publisher: int
    campaign: int
    at: datetime
    sub1: str = ""
    slot: int = 0
    country: str = ""
    reason: str = "valid"
    status: str = ""  # a conversion's: pending, approved, released, rejected, reversed
    payout: int = 0
    price: int = 0
    sale: int = 0
    currency: str = "EUR"


@dataclass
class World:
    publishers: list[int]
    cpa_campaign: int
    cpa_goal: int
    cpm_campaign: int
    links: dict[tuple[int, int], int]  # (publisher, campaign) -> link id
    slots: dict[int, int]  # publisher -> slot id
    creative: int
    emails: dict[int, str] = field(default_factory=dict)  # user id -> email (password: tests.factories.PASSWORD)
    events: list[Event] = field(default_factory=list)

    async def add(self, events: list[Event]) -> None:
        """Store the events as the writers do: clicks and impressions in batches, conversions as rows."""
        clicks, views = [], []
        for e in events:
            if e.kind == "click":
                e_id = f"w-click-{next(_seq)}"
                e.__dict__["click_id"] = e_id
                clicks.append(
                    (
                        e_id,
                        e.at,
                        self.links[(e.publisher, e.campaign)],
                        e.campaign,
                        e.publisher,
                        e.sub1,
                        "",
                        "",
                        "",
                        "",
                        "",
                        "Chrome",
                        "v",
                        e.reason,
                        e.slot or None,
                        e.country,
                    )
                )
            elif e.kind == "impression":
                views.append(
                    (
                        f"w{next(_seq):015d}",
                        e.at,
                        self.slots[e.publisher],
                        self.creative,
                        e.campaign,
                        e.publisher,
                        "v",
                        e.reason,
                        e.country,
                    )
                )
        if clicks:
            await tracking.write_clicks(clicks)
        if views:
            await write_impressions(views)
        for e in events:
            if e.kind == "conversion":
                await self._conversion(e)
        self.events.extend(events)

    async def _conversion(self, e: Event) -> None:
        """A conversion on a click of its own (stored first, so the conversion carries its sub-ID,
        slot and country)."""
        click_id = f"w-conv-click-{next(_seq)}"
        await tracking.write_clicks(
            [
                (
                    click_id,
                    e.at,
                    self.links[(e.publisher, e.campaign)],
                    e.campaign,
                    e.publisher,
                    e.sub1,
                    "",
                    "",
                    "",
                    "",
                    "",
                    "Chrome",
                    "v",
                    "valid",
                    e.slot or None,
                    e.country,
                )
            ]
        )
        self.events.append(Event("click", e.publisher, e.campaign, e.at, e.sub1, e.slot, e.country))
        released = e.status == "released"
        status = "approved" if released else e.status
        await Conversion.insert(
            Conversion(
                campaign=e.campaign,
                goal=self.cpa_goal,
                publisher=e.publisher,
                link=self.links[(e.publisher, e.campaign)],
                click_id=click_id,
                txn_id=f"txn-{next(_seq)}",
                sale_amount_minor=e.sale or None,
                currency=e.currency,
                advertiser_amount_minor=e.price,
                publisher_amount_minor=e.payout,
                network_amount_minor=e.price - e.payout,
                status=status,
                source="api",
                clicked_at=e.at,
                converted_at=e.at,
                hold_until=e.at + timedelta(days=30),
                created_at=e.at,
                approved_at=e.at if status == "approved" else None,
                released_at=e.at + timedelta(days=1) if released else None,
            )
        )


async def build(settings, publishers: int = 2) -> World:
    """Two campaigns in EUR (a CPA one with links, a CPM one with banners) and publishers in both."""
    setup = await campaign_with_link(settings)
    camp = await ad_campaign(settings, name="Banners")
    pubs = [setup.publisher.id]
    links = {(setup.publisher.id, setup.campaign_id): setup.link_id}
    first = setup.publisher
    slots: dict[int, int] = {}
    members = [first]
    for _ in range(publishers - 1):
        members.append(await publisher(settings))
    for pub in members:
        if pub.id not in pubs:
            pubs.append(pub.id)
            await campaigns.join(pub, setup.campaign_id)
            row = await Link.select(Link.id).where(Link.publisher == pub.id, Link.campaign == setup.campaign_id).first()
            links[(pub.id, setup.campaign_id)] = row["id"]
        link_id, _ = await join(pub, camp)
        links[(pub.id, camp.campaign_id)] = link_id
        slots[pub.id] = (await slot(pub))["id"]
    goal = await Goal.select(Goal.id).where(Goal.campaign == setup.campaign_id).first()
    emails = {m.id: m.email for m in members} | {
        setup.advertiser.id: setup.advertiser.email,
        camp.advertiser.id: camp.advertiser.email,
    }
    return World(pubs, setup.campaign_id, goal["id"], camp.campaign_id, links, slots, camp.creatives["300x250"], emails)


def count(events: list[Event], kind: str, **where: Any) -> int:
    """The direct count the rollups must equal."""
    start, end = where.pop("start"), where.pop("end")
    return sum(
        1
        for e in events
        if e.kind == kind and start <= e.at < end and all(getattr(e, k) == v for k, v in where.items())
    )
