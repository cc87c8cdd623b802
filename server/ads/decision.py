"""The ad decision, the view beacon and offers on clicks: which ad a slot shows, whether a view
counts, and whether a click through /c/… carries an offer that was seen and not clicked before.

Everything here answers from memory (server/ads/inventory.py) and writes nothing to the database
or Redis in the request: counted views go to a buffer written in batches, with a provisional
reason. What must hold across server processes and hosts (an offer's view counts once, its click
once; the frequency cap; views per network) is decided when the batch is flushed, in one Redis
call per batch (server/ads/counting.py), and the offer's unique constraint in `impression` stores
a view once even if Redis were lost. What the answers depend on (a visitor over the frequency cap,
a network over its rate, a campaign's paced spend) is learnt back from those calls and from one
sync call per interval: at most SYNC_INTERVAL (or one flush interval) stale across processes, and
exact within one. A click on an ad is the one request that asks Redis (`OfferClicks`)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.ads import offers, render
from server.ads.counting import ClickClaims, DecisionSync, NetworkWindows, ViewCounter, process_tag, utc_day
from server.ads.inventory import CampaignEntry, Inventory, PublisherEntry, SlotEntry, SpendMeter
from server.ads.service import IMPRESSION_COLUMNS, SIZES, valid_impressions_on
from server.ads.tables import SlotFallback, SlotFormat, SlotStatus, ViewReason
from server.campaigns.tables import CampaignStatus
from server.core.deeplink import host_allowed
from server.tracking.buffer import EventBuffer
from server.tracking.classify import Reason, is_bot
from server.tracking.journal import Journal
from server.tracking.visitor import truncate_ip, visitor_hash

log = logging.getLogger("affnet.ads")

OFFER_TTL = 3600  # an offer must be seen, and clicked, within an hour of the decision
CLAIM_TTL = OFFER_TTL + 600  # Redis remembers an offer's view and click a little longer than it is valid
FREQUENCY_CAP_DAILY = 10  # valid views of one campaign per visitor per UTC day
DECISIONS_PER_MINUTE = 600  # per network (IPv4 /24, IPv6 /48), across every server process
VIEWS_PER_MINUTE = 300
PACING_AHEAD = 3600  # a daily budget may run an hour ahead of an even spread through the day
DAY = 86400
FLUSH_INTERVAL = 0.5  # the impression buffer's, and so how late a view is classified at most
SYNC_INTERVAL = 0.5  # how often decisions per network and campaigns' impression counts are shared


class Frequency:
    """Valid views per (visitor, campaign) on the current UTC day as this process knows them: its
    own provisional views, and what its flushes learnt (bounded memory). A hint for the decision
    and the provisional reason; the flush decides (server/ads/counting.py)."""

    def __init__(self, cap: int = FREQUENCY_CAP_DAILY, max_entries: int = 500_000) -> None:
        self.cap = cap
        self.max_entries = max_entries
        self._day: date | None = None
        self._counts: dict[tuple[str, int], int] = {}

    def _for(self, day: date) -> dict[tuple[str, int], int]:
        if day != self._day:
            self._day, self._counts = day, {}
        return self._counts

    def capped(self, visitor: str, campaign_id: int, day: date) -> bool:
        return self._for(day).get((visitor, campaign_id), 0) >= self.cap

    def add(self, visitor: str, campaign_id: int, day: date) -> None:
        self.learn(visitor, campaign_id, day, self._for(day).get((visitor, campaign_id), 0) + 1)

    def learn(self, visitor: str, campaign_id: int, day: date, views: int) -> None:
        if self._day is not None and day < self._day:
            return  # a late batch of yesterday's views says nothing about today
        counts = self._for(day)
        if len(counts) >= self.max_entries:
            counts.clear()  # the hint loosens for a moment rather than memory growing without bound
        if views > counts.get((visitor, campaign_id), 0):
            counts[(visitor, campaign_id)] = views


class ImpressionTally:
    """Valid impressions per campaign and UTC day, for pacing and budgets: the count every process
    shares as this one last saw it (its own flushes, and a read every sync interval), plus its own
    provisional valid views not yet flushed. A campaign's spend is so at most one sync interval
    behind the other processes' flushed views (and their flush interval behind their beacons)."""

    def __init__(self) -> None:
        self.shared: dict[tuple[int, str], int] = {}
        self.unflushed: dict[tuple[int, str], int] = {}

    def add(self, campaign_id: int, day: str) -> None:
        key = (campaign_id, day)
        self.unflushed[key] = self.unflushed.get(key, 0) + 1

    def flushed(self, campaign_id: int, day: str, views: int) -> None:
        key = (campaign_id, day)
        left = self.unflushed.get(key, 0) - views
        if left > 0:
            self.unflushed[key] = left
        else:
            self.unflushed.pop(key, None)

    def learn(self, counts: dict[tuple[int, str], int]) -> None:
        if len(self.shared) > 100_000:
            self.shared.clear()  # yesterday's go; today's are read again at the next sync
        for key, views in counts.items():
            if views > self.shared.get(key, -1):
                self.shared[key] = views

    def count(self, campaign_id: int, day: str, stored: int) -> int:
        """Valid views of the campaign on the day; `stored` is what the database held when the
        campaign was loaded (all there is to go on until the shared count is known)."""
        key = (campaign_id, day)
        return max(self.shared.get(key, 0), stored) + self.unflushed.get(key, 0)


class OfferClaims:
    """Each offer's view and click as this process saw them (bounded memory): a replay to the same
    process is refused at once; across processes the flushes decide (server/ads/counting.py)."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._views: dict[str, float] = {}
        self._clicks: dict[str, float] = {}

    def reset(self) -> None:
        self._views.clear()
        self._clicks.clear()

    def _claim(self, seen: dict[str, float], offer_id: str, now: float) -> bool:
        """True if this process had not claimed the offer yet (and claims it now)."""
        if offer_id in seen:
            return False
        if len(seen) >= self.max_entries:
            for key in [k for k, until in seen.items() if until <= now]:
                del seen[key]
            if len(seen) >= self.max_entries:
                seen.clear()  # the flush and the unique constraint still hold
        seen[offer_id] = now + CLAIM_TTL
        return True

    def claim_view(self, offer_id: str, now: float) -> bool:
        return self._claim(self._views, offer_id, now)

    def claim_click(self, offer_id: str, now: float) -> bool:
        return self._claim(self._clicks, offer_id, now)

    def viewed(self, offer_id: str) -> bool:
        return offer_id in self._views


# --- the decision --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What an ads endpoint answers: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


def _error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message}})


def page_host(origin: str | None, referer: str | None) -> tuple[str, str] | None:
    """(host, netloc) of the page asking, from its Origin header (sent with cross-site requests),
    else its Referer; None if neither names an http(s) page."""
    for value in (origin, referer):
        if not value or value == "null":
            continue
        try:
            parts = urlsplit(value[:2048])
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            continue
        if parts.scheme in ("http", "https") and host:
            return host, parts.netloc.lower()
    return None


def can_serve(entry: CampaignEntry, publisher: PublisherEntry, today: date, seconds_into_day: float) -> bool:
    """The campaign can take one more impression now: active, within its budgets (daily budgets
    paced through the day), able to pay one more click if it pays per click, and under its click caps."""
    if entry.status != CampaignStatus.active.value:
        return False
    fresh = entry.day == today  # a load from yesterday says nothing about today's spend and clicks
    spent_today = entry.spent_today_minor if fresh else 0
    clicks_today = entry.clicks_today if fresh else 0
    cost_today_milli = spent_today * 1000 + entry.extra_milli
    if entry.daily_budget_minor is not None:
        daily_milli = entry.daily_budget_minor * 1000
        if cost_today_milli >= daily_milli or cost_today_milli + entry.cpc_price * 1000 > daily_milli:
            return False
        paced = daily_milli * min(seconds_into_day + PACING_AHEAD, DAY) // DAY
        if cost_today_milli >= paced:
            return False
    if entry.total_budget_minor is not None:
        total_milli = entry.total_budget_minor * 1000
        spent_milli = entry.spent_total_minor * 1000 + entry.extra_milli
        if spent_milli >= total_milli or (entry.cpc_price and spent_milli + entry.cpc_price * 1000 > total_milli):
            return False
    if entry.cap_clicks_daily is not None and clicks_today >= entry.cap_clicks_daily:
        return False
    if (
        entry.cap_publisher_clicks_daily is not None
        and publisher.day == today
        and publisher.clicks_today.get(entry.campaign_id, 0) >= entry.cap_publisher_clicks_daily
    ):
        return False
    return True


class Decider:
    """Chooses an ad for a slot: among the creatives of exactly the slot's format, from active
    campaigns the slot's publisher is approved in that can take traffic, weighted by the
    publisher's expected earnings per thousand impressions (eCPM)."""

    def __init__(
        self,
        inventory: Inventory,
        offer_key: bytes,
        visitor_key: bytes,
        frequency: Frequency,
        tally: ImpressionTally,
        *,
        shared: bool = False,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inventory = inventory
        self.offer_key = offer_key
        self.visitor_key = visitor_key
        self.frequency = frequency
        self.tally = tally
        self.shared = shared
        self.rng = rng or random.SystemRandom()
        self.clock = clock
        self.base_url = inventory.base_url
        self.own_netloc = urlsplit(inventory.base_url).netloc.lower()
        self.network_rate = NetworkWindows(DECISIONS_PER_MINUTE, shared=shared)

    def reset(self) -> None:
        self.network_rate = NetworkWindows(DECISIONS_PER_MINUTE, shared=self.shared)

    def _fallback(self, slot: SlotEntry, reason: str) -> Answer:
        size = SIZES[SlotFormat(slot.format)]
        body: dict[str, Any] = {
            "status": "fallback",
            "reason": reason,
            "fallback": slot.fallback,
            "format": slot.format,
            "width": size.width,
            "height": size.height,
        }
        if slot.fallback == SlotFallback.house.value:
            body["html"] = render.house(slot.house_text, slot.house_url)
        elif slot.fallback == SlotFallback.html.value:
            body["html"] = slot.fallback_html
        return Answer(200, body)

    async def decide(
        self,
        slot_key: str,
        *,
        origin: str | None,
        referer: str | None,
        ip: str,
        user_agent: str,
        now: float | None = None,
    ) -> Answer:
        now = self.clock() if now is None else now
        slot = await self.inventory.slots.get(slot_key) if slot_key and len(slot_key) <= 24 else None
        if slot is None:
            return _error(
                404,
                "unknown_slot",
                "There is no ad slot with this key: copy the snippet again from your Ad slots page.",
            )
        page = page_host(origin, referer)
        if page is None:
            return _error(
                403, "unknown_site", "The page showing this slot could not be told (no Origin or Referer header)."
            )
        if page[1] != self.own_netloc and not host_allowed(page[0], slot.domains):
            return _error(
                403,
                "site_not_allowed",
                f"This slot may not appear on {page[0]}: add the domain to the slot's site domains.",
            )
        if self.network_rate.over(truncate_ip(ip), now):
            return self._fallback(slot, "rate_limited")
        if slot.status != SlotStatus.active.value or not slot.publisher_approved:
            return self._fallback(slot, "slot_paused")
        if is_bot(user_agent):
            return self._fallback(slot, "no_ad")  # the same answer as an empty slot: no hint for bots
        moment = datetime.fromtimestamp(now, UTC)
        today = moment.date()
        seconds = now - datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp()
        visitor = visitor_hash(self.visitor_key, ip, user_agent, today)
        publisher = await self.inventory.publishers.get(slot.publisher_id)
        candidates: list[tuple[int, CampaignEntry, int]] = []
        total = 0
        day = ""
        if publisher is not None:
            for campaign_id, (link_id, _) in publisher.links.items():
                entry = await self.inventory.campaigns.get(campaign_id)
                if entry is not None and entry.cpm_price:
                    day = day or today.isoformat()
                    stored = entry.impressions_today if entry.day == today else 0
                    entry.extra_milli = self.tally.count(campaign_id, day, stored) * entry.cpm_price
                if (
                    entry is None
                    or slot.format not in entry.creatives
                    or not can_serve(entry, publisher, today, seconds)
                    or self.frequency.capped(visitor, campaign_id, today)
                ):
                    continue
                candidates.append((entry.weight, entry, link_id))
                total += entry.weight
        if not candidates:
            return self._fallback(slot, "no_ad")
        pick = self.rng.randrange(total)
        chosen = candidates[-1]
        for candidate in candidates:
            if pick < candidate[0]:
                chosen = candidate
                break
            pick -= candidate[0]
        _, entry, link_id = chosen
        creative = self.rng.choice(entry.creatives[slot.format])
        token, offer_id = offers.issue(
            self.offer_key,
            slot_id=slot.slot_id,
            creative_id=creative.creative_id,
            campaign_id=entry.campaign_id,
            link_id=link_id,
            publisher_id=slot.publisher_id,
            expires_at=int(now) + OFFER_TTL,
        )
        code = publisher.links[entry.campaign_id][1]  # type: ignore[union-attr]
        size = SIZES[SlotFormat(slot.format)]
        base = self.base_url
        return Answer(
            200,
            {
                "status": "ad",
                "offer": offer_id,
                "format": slot.format,
                "width": size.width,
                "height": size.height,
                "creative": {"id": creative.creative_id, "name": creative.name},
                "frame_url": f"{base}/ads/f/{token}",
                "view_url": f"{base}/ads/v/{token}",
                "click_url": f"{base}/c/{code}?o={token}",
                "expires_in": OFFER_TTL,
            },
        )


# --- views and clicks ----------------------------------------------------------------------------


class Views:
    """The view beacon: a signed, unexpired offer's view goes into the impression buffer once per
    process, with a provisional reason; the buffer's flush decides it for every process (`store`)."""

    def __init__(
        self,
        inventory: Inventory,
        claims: OfferClaims,
        buffer: EventBuffer,
        offer_key: bytes,
        visitor_key: bytes,
        frequency: Frequency,
        tally: ImpressionTally,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inventory = inventory
        self.claims = claims
        self.buffer = buffer
        self.offer_key = offer_key
        self.visitor_key = visitor_key
        self.frequency = frequency
        self.tally = tally
        self.clock = clock
        self.tag = process_tag()
        # In process only: the flush counts views per network for every process (`rate` is its limit).
        self.network_rate = NetworkWindows(VIEWS_PER_MINUTE)

    def reset(self) -> None:
        self.network_rate = NetworkWindows(VIEWS_PER_MINUTE)

    async def record(
        self, token: str, *, ip: str, user_agent: str, now: float | None = None, country: str = ""
    ) -> Answer:
        now = self.clock() if now is None else now
        offer = offers.read(self.offer_key, token)
        if offer is None:
            return _error(400, "offer_invalid", "This view URL was not issued by affnet, or was changed.")
        if offer.expired(now):
            return _error(
                410, "offer_expired", "This offer has expired: views count within an hour of the ad being chosen."
            )
        network = truncate_ip(ip)
        flooding = self.network_rate.over(network, now)  # every request counts towards the limit
        if not self.claims.claim_view(offer.offer_id, now):
            return _error(409, "offer_replayed", "This offer's view has already been counted.")
        moment = datetime.fromtimestamp(now, UTC)
        today = moment.date()
        visitor = visitor_hash(self.visitor_key, ip, user_agent, today)
        if is_bot(user_agent):
            reason = ViewReason.bot
        elif flooding:
            reason = ViewReason.rate_limited
        elif self.frequency.capped(visitor, offer.campaign_id, today):
            reason = ViewReason.frequency_capped
        else:
            reason = ViewReason.valid
            self.frequency.add(visitor, offer.campaign_id, today)
            self.tally.add(offer.campaign_id, today.isoformat())
        self.buffer.add(
            (
                offer.offer_id,
                moment,
                offer.slot_id,
                offer.creative_id,
                offer.campaign_id,
                offer.publisher_id,
                visitor,
                reason.value,
                country,
                network,  # for the flush: the network's views per minute, across processes
                self.tag,  # whose claim the offer's view is, so a batch classified again gets its answers
            )
        )
        # The same answer whatever the classification: telling a bot it was spotted helps it.
        return Answer(202, {"status": "recorded", "offer": offer.offer_id})


class OfferClicks:
    """What the click redirect asks when a click carries an offer (`/c/{code}?o=…`): why the click
    is invalid (None if the offer is good: signed for this link, unexpired, seen, clicked for the
    first time), and the ad slot it was shown in (None unless the offer is signed for this link).

    Answered from memory when memory can tell (a bad or expired offer, a second click here), else
    with one Redis call: clicks on ads are a small share of clicks, and a click's answer is stored
    with the click as it is answered. The view counts if a process claimed it by then: views are
    claimed at their process's flush, so a click more than one flush interval (FLUSH_INTERVAL)
    after its view beacon always finds it, whichever processes they reached."""

    def __init__(
        self,
        claims: OfferClaims,
        offer_key: bytes,
        redis: Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.claims = claims
        self.offer_key = offer_key
        self.clock = clock
        self._shared = ClickClaims(redis, claim_ttl=CLAIM_TTL) if redis is not None else None
        self._warned = 0.0

    async def check(self, token: str, link_id: int, now: float | None = None) -> tuple[Reason | None, int | None]:
        now = self.clock() if now is None else now
        offer = offers.read(self.offer_key, token)
        if offer is None or offer.link_id != link_id:
            return Reason.offer_invalid, None
        if offer.expired(now):
            return Reason.offer_expired, offer.slot_id
        if not self.claims.claim_click(offer.offer_id, now):
            return Reason.offer_replayed, offer.slot_id
        viewed_here = self.claims.viewed(offer.offer_id)
        local = None if viewed_here else Reason.not_viewed
        if self._shared is None:
            return local, offer.slot_id
        try:
            answer = await self._shared.claim(offer.offer_id, viewed_here=viewed_here)
        except (RedisError, OSError) as exc:  # the click is answered all the same
            if now - self._warned > 60:
                self._warned = now
                log.warning("Redis unavailable for clicks on ads (%s): checked in process only", exc)
            return local, offer.slot_id
        return (None if answer is None else Reason(answer)), offer.slot_id


# --- one per server process ----------------------------------------------------------------------


class AdServer:
    """The ads side of a server process: its caches, the decider, the view beacon, offers on clicks,
    the impression buffer and what it shares with the other processes through Redis. Built by
    create_app; started and stopped with the app."""

    def __init__(
        self,
        *,
        base_url: str,
        redis: Redis | None,
        offer_key: bytes,
        visitor_key: bytes,
        writer: Callable[[list[tuple]], Any],
        rng: random.Random | None = None,
        journal: Journal | None = None,
        spend: SpendMeter,
        sync_interval: float = SYNC_INTERVAL,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.redis = redis
        self.offer_key = offer_key
        self.inventory = Inventory(self.base_url, spend)
        self.frequency = Frequency()
        self.tally = ImpressionTally()
        self.claims = OfferClaims()
        self._writer = writer
        self.counter = (
            ViewCounter(redis, columns=IMPRESSION_COLUMNS, seed=valid_impressions_on, claim_ttl=CLAIM_TTL)
            if redis is not None
            else None
        )
        self._sync = DecisionSync(redis) if redis is not None else None
        self.sync_interval = sync_interval
        self._sync_task: asyncio.Task[None] | None = None
        self._warned = 0.0
        # The journal makes a counted view durable as it is answered: CPM is billed on them.
        self.buffer = EventBuffer(writer=self.store, flush_interval=FLUSH_INTERVAL, max_batch=5000, journal=journal)
        shared = redis is not None
        self.decider = Decider(
            self.inventory, offer_key, visitor_key, self.frequency, self.tally, shared=shared, rng=rng
        )
        self.views = Views(self.inventory, self.claims, self.buffer, offer_key, visitor_key, self.frequency, self.tally)
        self.clicks = OfferClicks(self.claims, offer_key, redis)
        self.country_header: bytes | None = None  # server/tracking/geo.py: set from the settings
        self.frame_csp = render.frame_csp("{0.scheme}://{0.netloc}".format(urlsplit(self.base_url)))

    async def start(self) -> None:
        await self.buffer.start()
        if self._sync is not None and self._sync_task is None:
            self._sync_task = asyncio.create_task(self._sync_forever(), name="affnet-ads-sync")

    async def stop(self) -> None:
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.buffer.stop()  # every counted view is stored before the process exits

    def reset(self) -> None:
        """Forget everything held in process (the tests empty the database between tests)."""
        self.inventory.clear()
        self.frequency = Frequency()
        self.decider.frequency = self.views.frequency = self.frequency
        self.tally = ImpressionTally()
        self.decider.tally = self.views.tally = self.tally
        self.claims.reset()
        self.decider.reset()
        self.views.reset()

    # --- the flush: the buffer's writer -----------------------------------------------------------

    async def store(self, rows: list[tuple]) -> None:
        """Classify a batch of buffered views for every process at once, store it, and keep what the
        answers say (who is over the frequency cap, what campaigns spent). Raises if Redis or the
        database cannot take it: the buffer keeps the rows, and a batch classified again gets the
        same answers."""
        width = len(IMPRESSION_COLUMNS)
        at_time, at_campaign, at_reason = (IMPRESSION_COLUMNS.index(c) for c in ("viewed_at", "campaign", "reason"))
        if self.counter is None:
            await self._writer([row[:width] for row in rows])
            counts = None
        else:
            counted = await self.counter.classify(rows, cap=self.frequency.cap, rate=self.views.network_rate.limit)
            await self._writer(counted.rows)
            for visitor, campaign_id, day, views in counted.frequency:
                self.frequency.learn(visitor, campaign_id, day, views)
            counts = counted.impressions
        # This process's provisional valid views of the batch are now in the shared count (or, with
        # no Redis, in the local one).
        provisional: dict[tuple[int, str], int] = {}
        days: dict[int, str] = {}
        for row in rows:
            if len(row) == width + 2 and row[at_reason] == ViewReason.valid.value and row[-1] == self.views.tag:
                key = (row[at_campaign], utc_day(row[at_time], days))
                provisional[key] = provisional.get(key, 0) + 1
        for (campaign_id, day), views in provisional.items():
            self.tally.flushed(campaign_id, day, views)
        if counts is None:
            counts = {k: self.tally.shared.get(k, 0) + n for k, n in provisional.items()}
        self.tally.learn(counts)

    # --- every sync interval ----------------------------------------------------------------------

    def _paced(self) -> Iterator[tuple[int, str]]:
        """The campaigns whose spend decides whether they are served: CPM with a budget."""
        day = datetime.fromtimestamp(self.decider.clock(), UTC).date().isoformat()
        for entry in self.inventory.campaigns.values():
            if entry.cpm_price and (entry.daily_budget_minor is not None or entry.total_budget_minor is not None):
                yield entry.campaign_id, day

    async def sync(self) -> None:
        """Share this process's decisions per network and read the paced campaigns' impressions."""
        if self._sync is not None:
            self.tally.learn(await self._sync.run(self.decider.network_rate, self._paced()))

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self.sync()
            except Exception as exc:  # noqa: BLE001 - the next interval tries again
                now = time.monotonic()
                if now - self._warned > 60:
                    self._warned = now
                    log.warning("Redis unavailable for the ad decision's shared counts (%s): in process only", exc)
