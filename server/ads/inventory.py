"""What the ad decision needs, held in process memory: slots by public key, each publisher's
approved campaigns (with their tracked links), and each campaign's terms, live creatives by
format, estimated earnings and spend.

Entries load from the database on first use and live TTL seconds, one load per key at a time.
While an expired entry reloads, every other request for it is answered from the entry it replaces
(at most a load's time old), so a reload never holds up a slot's traffic; when the reload fails
(the database away) the last entry keeps serving and the reload is tried again every
RETRY_INTERVAL seconds, the failures logged once per interval with a count. An entry dropped by a
change is never served stale.
A change to a campaign or a membership drops that campaign's entries at once here and, over the
click cache's Redis channel, in every server process (server/tracking/cache.py); a change to a
slot does the same over a channel of its own. So a paused campaign stops being served within
moments everywhere, and within TTL at worst should a message be lost. (Creatives added or
archived show within TTL: the campaigns domain announces campaign changes, not creative ones.)"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Generic, Protocol, TypeVar
from urllib.parse import quote

from piccolo.query.functions.aggregate import Count
from redis.asyncio import Redis

from server.accounts.tables import Publisher, PublisherStatus
from server.ads.tables import AdSlot, Impression, SlotFormat
from server.campaigns.tables import (
    Campaign,
    CampaignStatus,
    Creative,
    CreativeKind,
    Goal,
    Link,
    MembershipStatus,
    PayoutModel,
)
from server.core import changes, clock
from server.core.logthrottle import LogThrottle
from server.tracking.cache import retrieved
from server.tracking.classify import Reason
from server.tracking.tables import Click

log = logging.getLogger("affnet.ads")

SLOT_CHANNEL = "affnet:ad-slot-changed"
TTL = 30.0
MISSING_TTL = 5.0
MAX_ENTRIES = 100_000
RETRY_INTERVAL = 5.0  # while reloads fail, an expired entry is served and its reload tried this often
# Expected earnings of goals that are not paid per impression, for weighing them against CPM:
# a click-through rate of 0.2 % and a conversion rate of 2 % of clicks (network-wide priors).
EXPECTED_CLICKS_PER_MILLE = 2
EXPECTED_CONVERSIONS_PER_CENT = 2

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Entries by key for TTL seconds, one load per key at a time; `campaigns_of` names the
    campaigns an entry depends on, so a change to one drops every entry built from it."""

    def __init__(
        self,
        loader: Callable[[K], Awaitable[V | None]],
        *,
        campaigns_of: Callable[[V], Iterable[int]] = lambda _: (),
        ttl: float = TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._campaigns_of = campaigns_of
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[K, tuple[float, V | None]] = {}
        self._by_campaign: dict[int, set[K]] = {}
        self._loading: dict[K, asyncio.Task[V | None]] = {}
        self.failures = LogThrottle(log, "ad inventory loads")

    def peek(self, key: K) -> V | None:
        """The entry if it is loaded and fresh, without loading it."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > self._clock() else None

    async def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        loading = self._loading.get(key)
        if entry is not None:
            # Expired: answered from the entry it replaces while it reloads (at most a load's time
            # old), so a reload never holds a slot's requests up; a dropped entry is not here.
            if loading is None:
                self._start(key, entry)
            return entry[1]
        if loading is None:
            loading = self._start(key, None)
        return await asyncio.shield(loading)

    def _start(self, key: K, entry: tuple[float, V | None] | None) -> asyncio.Task[V | None]:
        task = asyncio.get_running_loop().create_task(self._load(key, entry))
        task.add_done_callback(retrieved)
        self._loading[key] = task
        return task

    async def _load(self, key: K, entry: tuple[float, V | None] | None) -> V | None:
        try:
            value = await self._loader(key)
        except Exception:
            if entry is None or self._entries.get(key) is not entry:
                raise
            # The last entry, not dropped by a change meanwhile: it serves until the next try.
            self.failures.failed("reloading ad inventory entry %r failed; serving the last one meanwhile", key)
            self._entries[key] = (self._clock() + RETRY_INTERVAL, entry[1])
            return entry[1]
        finally:
            self._loading.pop(key, None)
        self._store(key, value)
        return value

    def _store(self, key: K, value: V | None) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self.clear()
        self._entries[key] = (self._clock() + (self._ttl if value is not None else MISSING_TTL), value)
        if value is not None:
            for campaign_id in self._campaigns_of(value):
                self._by_campaign.setdefault(campaign_id, set()).add(key)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def values(self) -> list[V]:
        """The entries loaded and fresh now."""
        now = self._clock()
        return [value for until, value in self._entries.values() if value is not None and until > now]

    def drop_campaign(self, campaign_id: int) -> None:
        for key in self._by_campaign.pop(campaign_id, ()):
            self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._by_campaign.clear()


# --- entries --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotEntry:
    slot_id: int
    publisher_id: int
    public_key: str
    format: str
    domains: frozenset[str]
    status: str
    fallback: str
    house_text: str
    house_url: str
    fallback_html: str
    publisher_approved: bool


@dataclass(frozen=True, slots=True)
class CreativeEntry:
    creative_id: int
    format: str  # an IAB size such as "300x250", or "native" for text creatives
    name: str
    text: str
    image_url: str  # absolute; "" for text
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class PublisherEntry:
    """A publisher's approved memberships in campaigns that have not ended: campaign id -> (link id,
    link code), and their valid clicks per campaign today (for per-publisher click caps). A campaign
    joined since the entry loaded is offered once it reloads (TTL): the change is announced for the
    campaign, which the entry did not know yet."""

    publisher_id: int
    links: dict[int, tuple[int, str]]
    clicks_today: dict[int, int]
    day: date


@dataclass(slots=True)
class CampaignEntry:
    campaign_id: int
    advertiser_id: int
    status: str
    currency: str
    advertiser_host: str  # shown on native ads: who is advertising
    creatives: dict[str, tuple[CreativeEntry, ...]]
    weight: int  # the publisher's expected earnings per thousand impressions, in minor units (at least 1)
    cpm_price: int  # what the advertiser pays per thousand valid impressions (0: no CPM goal)
    cpc_price: int  # per valid click (0: no CPC goal)
    daily_budget_minor: int | None
    total_budget_minor: int | None
    cap_clicks_daily: int | None
    cap_publisher_clicks_daily: int | None
    day: date
    spent_today_minor: int  # estimated at load time (see load_campaign), today's impressions aside
    spent_total_minor: int  # the same, ever
    clicks_today: int
    # Today's valid impressions stored when the entry loaded: what pacing starts from until the
    # shared counter is known (server/ads/decision.py: ImpressionTally).
    impressions_today: int = field(default=0)
    # What today's valid impressions cost, in thousandths of a minor unit (a CPM price is per
    # thousand, so one impression costs exactly cpm_price of them); kept current by the decider.
    extra_milli: int = field(default=0)

    def campaigns(self) -> tuple[int, ...]:
        return (self.campaign_id,)


def expected_cpm(goals: list[dict]) -> tuple[int, int, int]:
    """(the publisher's expected earnings per thousand impressions, the advertiser's CPM price, CPC price),
    from the campaign's first goal of each model, in minor units. Integers: these weigh campaigns
    against each other and never move money."""
    first: dict[str, dict] = {}
    for goal in goals:
        first.setdefault(goal["payout_model"], goal)
    earnings = 0
    cpm_price = cpc_price = 0
    if (goal := first.get(PayoutModel.cpm.value)) is not None:
        earnings += goal["publisher_amount"]
        cpm_price = goal["advertiser_amount"]
    if (goal := first.get(PayoutModel.cpc.value)) is not None:
        earnings += goal["publisher_amount"] * EXPECTED_CLICKS_PER_MILLE
        cpc_price = goal["advertiser_amount"]
    for model in (PayoutModel.cpl.value, PayoutModel.cpa.value):
        if (goal := first.get(model)) is not None:
            earnings += goal["publisher_amount"] * EXPECTED_CLICKS_PER_MILLE * EXPECTED_CONVERSIONS_PER_CENT // 100
    return max(earnings, 1), cpm_price, cpc_price


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def _valid_impressions(campaign_id: int, since: datetime) -> int:
    return await Impression.count().where(
        Impression.campaign == campaign_id, Impression.reason == "valid", Impression.viewed_at >= since
    )


class SpendMeter(Protocol):
    """What a campaign has spent, by the earnings' one rule (server/earnings/spend.py, handed in
    by the app): earnings sit above ads in the domain order, since they price ads' impressions."""

    async def conversions_minor(
        self, campaign_id: int, since: datetime | None = None, until: datetime | None = None
    ) -> int: ...

    async def spent_minor(
        self, campaign_id: int, since: datetime | None = None, until: datetime | None = None
    ) -> int: ...


class Inventory:
    """The three caches, their loaders and their invalidation. One per server process."""

    def __init__(self, base_url: str, spend: SpendMeter, clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        self.spend = spend
        self.slots: Memo[str, SlotEntry] = Memo(self.load_slot, clock=clock)
        self.publishers: Memo[int, PublisherEntry] = Memo(
            self.load_publisher, campaigns_of=lambda e: e.links, clock=clock
        )
        self.campaigns: Memo[int, CampaignEntry] = Memo(
            self.load_campaign, campaigns_of=CampaignEntry.campaigns, clock=clock
        )

    # the tracking cache's registry calls these on every campaign change
    def drop_campaign(self, campaign_id: int) -> None:
        self.publishers.drop_campaign(campaign_id)
        self.campaigns.drop_campaign(campaign_id)

    def clear(self) -> None:
        self.slots.clear()
        self.publishers.clear()
        self.campaigns.clear()

    async def load_slot(self, public_key: str) -> SlotEntry | None:
        if not public_key or len(public_key) > 24:
            return None
        row = (
            await AdSlot.select(
                AdSlot.id,
                AdSlot.publisher,
                AdSlot.public_key,
                AdSlot.format,
                AdSlot.domains,
                AdSlot.status,
                AdSlot.fallback,
                AdSlot.house_text,
                AdSlot.house_url,
                AdSlot.fallback_html,
            )
            .where(AdSlot.public_key == public_key)
            .first()
        )
        if row is None:
            return None
        profile = await Publisher.select(Publisher.status).where(Publisher.user == row["publisher"]).first()
        return SlotEntry(
            slot_id=row["id"],
            publisher_id=row["publisher"],
            public_key=row["public_key"],
            format=row["format"],
            domains=frozenset(row["domains"].split()),
            status=row["status"],
            fallback=row["fallback"],
            house_text=row["house_text"],
            house_url=row["house_url"],
            fallback_html=row["fallback_html"],
            publisher_approved=profile is not None and profile["status"] == PublisherStatus.approved.value,
        )

    async def load_publisher(self, publisher_id: int) -> PublisherEntry:
        today = clock.now().date()
        # Whatever the campaigns' status: the campaign's own entry says whether it runs, and so a
        # resumed campaign needs no reload of every publisher in it.
        rows = await Link.select(Link.id, Link.code, Link.campaign).where(
            Link.publisher == publisher_id,
            Link.membership.status == MembershipStatus.approved.value,
            Link.campaign.status != CampaignStatus.ended.value,
        )
        links = {r["campaign"]: (r["id"], r["code"]) for r in rows}
        clicks: dict[int, int] = {}
        if links:
            counted = (
                await Click.select(Click.campaign, Count(Click.id, alias="clicks"))
                .where(
                    Click.publisher == publisher_id,
                    Click.reason == Reason.valid.value,
                    Click.clicked_at >= _day_start(today),
                    Click.campaign.is_in(list(links)),
                )
                .group_by(Click.campaign)
            )
            clicks = {r["campaign"]: r["clicks"] for r in counted}
        return PublisherEntry(publisher_id=publisher_id, links=links, clicks_today=clicks, day=today)

    async def load_campaign(self, campaign_id: int) -> CampaignEntry | None:
        row = (
            await Campaign.select(
                Campaign.id,
                Campaign.advertiser,
                Campaign.status,
                Campaign.currency,
                Campaign.landing_url,
                Campaign.daily_budget_minor,
                Campaign.total_budget_minor,
                Campaign.cap_clicks_daily,
                Campaign.cap_publisher_clicks_daily,
            )
            .where(Campaign.id == campaign_id)
            .first()
        )
        if row is None:
            return None
        goals = await Goal.select().where(Goal.campaign == campaign_id).order_by(Goal.position)
        weight, cpm_price, cpc_price = expected_cpm(goals)
        creatives: dict[str, list[CreativeEntry]] = {}
        for c in (
            await Creative.select()
            .where(Creative.campaign == campaign_id, Creative.archived.eq(False))
            .order_by(Creative.id)
        ):
            if c["kind"] == CreativeKind.text.value:
                fmt, url = SlotFormat.native.value, ""
            elif c["iab_size"]:
                fmt, url = c["iab_size"], f"{self.base_url}/media/{quote(c['image_path'])}"
            else:
                continue  # an image of no standard size fits no slot
            creatives.setdefault(fmt, []).append(
                CreativeEntry(
                    creative_id=c["id"],
                    format=fmt,
                    name=c["name"],
                    text=c["text"],
                    image_url=url,
                    width=c["width"],
                    height=c["height"],
                )
            )
        today = clock.now().date()
        start = _day_start(today)
        clicks_today = await Click.count().where(
            Click.campaign == campaign_id, Click.reason == Reason.valid.value, Click.clicked_at >= start
        )
        spent_today, spent_total = await self._spend(
            campaign_id, start, cpc_price, clicks_today, row["total_budget_minor"] is not None
        )
        impressions_today = await _valid_impressions(campaign_id, start) if cpm_price else 0
        host = row["landing_url"].split("/")[2] if row["landing_url"].count("/") >= 2 else ""
        return CampaignEntry(
            campaign_id=campaign_id,
            advertiser_id=row["advertiser"],
            status=row["status"],
            currency=row["currency"],
            advertiser_host=host,
            creatives={k: tuple(v) for k, v in creatives.items()},
            weight=weight,
            cpm_price=cpm_price,
            cpc_price=cpc_price,
            daily_budget_minor=row["daily_budget_minor"],
            total_budget_minor=row["total_budget_minor"],
            cap_clicks_daily=row["cap_clicks_daily"],
            cap_publisher_clicks_daily=row["cap_publisher_clicks_daily"],
            day=today,
            spent_today_minor=spent_today,
            spent_total_minor=spent_total,
            clicks_today=clicks_today,
            impressions_today=impressions_today,
            extra_milli=impressions_today * cpm_price,
        )

    async def _spend(
        self, campaign_id: int, start: datetime, cpc_price: int, clicks_today: int, need_total: bool
    ) -> tuple[int, int]:
        """The decision's estimate of what the campaign spent today and ever, today's impressions
        aside (they are counted across processes as they happen: `extra_milli`): conversions
        approved today and today's valid clicks at the CPC price (their hours are priced only after
        they close); before today, what the CPC and CPM jobs priced plus approved conversions: the
        jobs' own rule (`SpendMeter`). The workers' pricing is the truth for what is billed; this
        only keeps a spent campaign from being offered."""
        today = await self.spend.conversions_minor(campaign_id, since=start) + clicks_today * cpc_price
        if not need_total:
            return today, today
        return today, await self.spend.spent_minor(campaign_id, until=start) + today


# --- invalidation across processes ---------------------------------------------------------------

_inventories: list[Inventory] = []
_redis: Redis | None = None


def register(inventory: Inventory, redis: Redis | None) -> None:
    """Receive this process's campaign changes (server/core/changes.py) and slot changes."""
    global _redis
    _inventories.append(inventory)
    changes.register(inventory, redis)
    _redis = redis or _redis


def unregister(inventory: Inventory) -> None:
    if inventory in _inventories:
        _inventories.remove(inventory)
    changes.unregister(inventory)


async def slot_changed(public_key: str) -> None:
    """Drop a slot here and tell the other processes to do the same."""
    for inventory in _inventories:
        inventory.slots.drop(public_key)
    if _redis is not None:
        try:
            await _redis.publish(SLOT_CHANNEL, public_key)
        except Exception:  # noqa: BLE001 - the TTL bounds staleness if Redis is away
            log.warning("could not publish the change of ad slot %s", public_key)


async def listen(redis: Redis, inventory: Inventory) -> None:
    """Apply other processes' slot changes until cancelled (campaign changes come through
    server/core/changes.py's listener, which the inventory is given too)."""
    await changes.follow(
        redis,
        (SLOT_CHANNEL,),
        lambda _channel, public_key: inventory.slots.drop(public_key),
        lost=inventory.slots.clear,
        what="ad slot invalidation",
    )
