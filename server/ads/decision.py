"""The ad decision, the view beacon and offers on clicks: which ad a slot shows, whether a view
counts, and whether a click through /c/… carries an offer that was seen and not clicked before.

Everything here answers from memory (server/ads/inventory.py) and writes nothing to the database
in the request: counted views go to a buffer written in batches. What must hold across server
processes (an offer's view counts once; its click counts once) is claimed in Redis with SET NX,
and the offer's unique constraint in `impression` makes the stored count right even if Redis
were lost: a view is stored once whatever happens before it."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis

from server.ads import offers, render
from server.ads.inventory import CampaignEntry, Inventory, PublisherEntry, SlotEntry, SpendMeter
from server.ads.service import SIZES
from server.ads.tables import SlotFallback, SlotFormat, SlotStatus, ViewReason
from server.campaigns.tables import CampaignStatus
from server.core.deeplink import host_allowed
from server.tracking.buffer import EventBuffer
from server.tracking.classify import Reason, is_bot
from server.tracking.journal import Journal
from server.tracking.service import NetworkRate
from server.tracking.visitor import truncate_ip, visitor_hash

log = logging.getLogger("affnet.ads")

OFFER_TTL = 3600  # an offer must be seen, and clicked, within an hour of the decision
CLAIM_TTL = OFFER_TTL + 600  # Redis remembers an offer's view and click a little longer than it is valid
FREQUENCY_CAP_DAILY = 10  # valid views of one campaign per visitor per UTC day
DECISIONS_PER_MINUTE = 600  # per network (IPv4 /24, IPv6 /48) and server process
VIEWS_PER_MINUTE = 300
PACING_AHEAD = 3600  # a daily budget may run an hour ahead of an even spread through the day
DAY = 86400
VIEW_KEY = "affnet:ad:view:"
CLICK_KEY = "affnet:ad:click:"


class Frequency:
    """Valid views per (visitor, campaign) on the current UTC day, in process (bounded memory)."""

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
        counts = self._for(day)
        if len(counts) >= self.max_entries:
            counts.clear()  # caps loosen for a moment rather than memory growing without bound
        counts[(visitor, campaign_id)] = counts.get((visitor, campaign_id), 0) + 1


class OfferClaims:
    """Each offer's view and click, claimed once: in process first (cheap, and all there is if
    Redis is away), then in Redis with SET NX, which is atomic across every server process."""

    def __init__(self, redis: Redis | None, max_entries: int = 1_000_000) -> None:
        self.redis = redis
        self.max_entries = max_entries
        self._views: dict[str, float] = {}
        self._clicks: dict[str, float] = {}
        self._warned = 0.0

    def reset(self) -> None:
        self._views.clear()
        self._clicks.clear()

    def _local(self, seen: dict[str, float], offer_id: str, now: float) -> bool:
        """True if this process had not claimed the offer yet (and claims it now)."""
        if offer_id in seen:
            return False
        if len(seen) >= self.max_entries:
            for key in [k for k, until in seen.items() if until <= now]:
                del seen[key]
            if len(seen) >= self.max_entries:
                seen.clear()  # Redis and the unique constraint still hold
        seen[offer_id] = now + CLAIM_TTL
        return True

    def _redis_down(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.warning("Redis unavailable for ad offers (%s): claiming in process only", exc)

    async def claim_view(self, offer_id: str, now: float) -> bool:
        if not self._local(self._views, offer_id, now):
            return False
        if self.redis is None:
            return True
        try:
            return bool(await self.redis.set(VIEW_KEY + offer_id, b"1", nx=True, ex=CLAIM_TTL))
        except Exception as exc:  # noqa: BLE001 - the unique constraint still stores the view once
            self._redis_down(exc)
            return True

    async def claim_click(self, offer_id: str, now: float) -> tuple[bool, bool]:
        """(the offer's view was counted, this is the offer's first click)."""
        first_here = self._local(self._clicks, offer_id, now)
        viewed_here = offer_id in self._views
        if self.redis is None:
            return viewed_here, first_here
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(VIEW_KEY + offer_id)
                pipe.set(CLICK_KEY + offer_id, b"1", nx=True, ex=CLAIM_TTL)
                viewed, first = await pipe.execute()
            return bool(viewed) or viewed_here, bool(first) and first_here
        except Exception as exc:  # noqa: BLE001
            self._redis_down(exc)
            return viewed_here, first_here


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
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inventory = inventory
        self.offer_key = offer_key
        self.visitor_key = visitor_key
        self.frequency = frequency
        self.rng = rng or random.SystemRandom()
        self.clock = clock
        self.base_url = inventory.base_url
        self.own_netloc = urlsplit(inventory.base_url).netloc.lower()
        self.network_rate = NetworkRate(limit=DECISIONS_PER_MINUTE)

    def reset(self) -> None:
        self.network_rate = NetworkRate(limit=DECISIONS_PER_MINUTE)

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
        if publisher is not None:
            for campaign_id, (link_id, _) in publisher.links.items():
                entry = await self.inventory.campaigns.get(campaign_id)
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
    """The view beacon: a signed, unexpired offer counts once, classified, into the impression buffer."""

    def __init__(
        self,
        inventory: Inventory,
        claims: OfferClaims,
        buffer: EventBuffer,
        offer_key: bytes,
        visitor_key: bytes,
        frequency: Frequency,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inventory = inventory
        self.claims = claims
        self.buffer = buffer
        self.offer_key = offer_key
        self.visitor_key = visitor_key
        self.frequency = frequency
        self.clock = clock
        self.network_rate = NetworkRate(limit=VIEWS_PER_MINUTE)

    def reset(self) -> None:
        self.network_rate = NetworkRate(limit=VIEWS_PER_MINUTE)

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
        flooding = self.network_rate.over(truncate_ip(ip), now)  # every request counts towards the limit
        if not await self.claims.claim_view(offer.offer_id, now):
            return _error(409, "offer_replayed", "This offer's view has already been counted.")
        moment = datetime.fromtimestamp(now, UTC)
        visitor = visitor_hash(self.visitor_key, ip, user_agent, moment.date())
        if is_bot(user_agent):
            reason = ViewReason.bot
        elif flooding:
            reason = ViewReason.rate_limited
        elif self.frequency.capped(visitor, offer.campaign_id, moment.date()):
            reason = ViewReason.frequency_capped
        else:
            reason = ViewReason.valid
            self.frequency.add(visitor, offer.campaign_id, moment.date())
            entry = self.inventory.campaigns.peek(offer.campaign_id)
            if entry is not None:
                entry.extra_milli += entry.cpm_price  # one impression costs cpm_price thousandths
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
            )
        )
        # The same answer whatever the classification: telling a bot it was spotted helps it.
        return Answer(202, {"status": "recorded", "offer": offer.offer_id})


class OfferClicks:
    """What the click redirect asks when a click carries an offer (`/c/{code}?o=…`): why the click
    is invalid (None if the offer is good: signed for this link, unexpired, seen, clicked for the
    first time), and the ad slot it was shown in (None unless the offer is signed for this link)."""

    def __init__(self, claims: OfferClaims, offer_key: bytes, clock: Callable[[], float] = time.time) -> None:
        self.claims = claims
        self.offer_key = offer_key
        self.clock = clock

    async def check(self, token: str, link_id: int, now: float | None = None) -> tuple[Reason | None, int | None]:
        now = self.clock() if now is None else now
        offer = offers.read(self.offer_key, token)
        if offer is None or offer.link_id != link_id:
            return Reason.offer_invalid, None
        if offer.expired(now):
            return Reason.offer_expired, offer.slot_id
        viewed, first = await self.claims.claim_click(offer.offer_id, now)
        if not first:
            return Reason.offer_replayed, offer.slot_id
        if not viewed:
            return Reason.not_viewed, offer.slot_id
        return None, offer.slot_id


# --- one per server process ----------------------------------------------------------------------


class AdServer:
    """The ads side of a server process: its caches, the decider, the view beacon, offers on clicks
    and the impression buffer. Built by create_app; started and stopped with the app."""

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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.redis = redis
        self.offer_key = offer_key
        self.inventory = Inventory(self.base_url, spend)
        self.frequency = Frequency()
        self.claims = OfferClaims(redis)
        # The journal makes a counted view durable as it is answered: CPM is billed on them.
        self.buffer = EventBuffer(writer=writer, flush_interval=0.5, max_batch=5000, journal=journal)
        self.decider = Decider(self.inventory, offer_key, visitor_key, self.frequency, rng=rng)
        self.views = Views(self.inventory, self.claims, self.buffer, offer_key, visitor_key, self.frequency)
        self.clicks = OfferClicks(self.claims, offer_key)
        self.country_header: bytes | None = None  # server/tracking/geo.py: set from the settings
        self.frame_csp = render.frame_csp("{0.scheme}://{0.netloc}".format(urlsplit(self.base_url)))

    def reset(self) -> None:
        """Forget everything held in process (the tests empty the database between tests)."""
        self.inventory.clear()
        self.frequency = Frequency()
        self.decider.frequency = self.views.frequency = self.frequency
        self.claims.reset()
        self.decider.reset()
        self.views.reset()
