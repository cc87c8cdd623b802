"""The view beacon and clicks on ads: whether an offer's view counts, and whether a click through
/c/… carries an offer that was seen and not clicked before.

A view is answered from memory and goes to the impression buffer with a provisional reason; what
must hold across server processes and hosts (an offer's view counts once; the frequency cap;
views per network) is decided when the batch is flushed, in one Redis call per batch
(server/ads/counting.py, server/ads/process.py), and the offer's unique constraint in
`impression` stores a view once even if Redis were lost. A click on an ad is the one request of
the ads that asks Redis (`OfferClicks`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.ads import offers
from server.ads.counting import ClickClaims, NetworkWindows, process_tag
from server.ads.decision import (
    CLAIM_TTL,
    VIEWS_PER_MINUTE,
    Answer,
    Frequency,
    ImpressionTally,
    error_answer,
)
from server.ads.inventory import Inventory
from server.ads.tables import ViewReason
from server.tracking import datacenter
from server.tracking.buffer import EventBuffer
from server.tracking.classify import Reason, is_bot
from server.tracking.visitor import truncate_ip, visitor_hash

log = logging.getLogger("affnet.ads")


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
        # Views from cloud and hosting networks are `datacenter`, as clicks are (settings.click_quality_checks).
        self.quality_checks = True
        self.datacenter = datacenter.snapshot()
        # In process only: the flush counts views per network for every process (`rate` is its limit).
        self.network_rate = NetworkWindows(VIEWS_PER_MINUTE)
        self._day: tuple[date, str] = (date.min, "")

    def reset(self) -> None:
        self.network_rate = NetworkWindows(VIEWS_PER_MINUTE)

    async def record(
        self, token: str, *, ip: str, user_agent: str, now: float | None = None, country: str = ""
    ) -> Answer:
        now = self.clock() if now is None else now
        offer = offers.read(self.offer_key, token)
        if offer is None:
            return error_answer(400, "offer_invalid", "This view URL was not issued by affnet, or was changed.")
        if offer.expired(now):
            return error_answer(
                410, "offer_expired", "This offer has expired: views count within an hour of the ad being chosen."
            )
        network = truncate_ip(ip)
        flooding = self.network_rate.over(network, now)  # every request counts towards the limit
        offer_id = offer.offer_id
        if not self.claims.claim_view(offer_id, now):
            return _REPLAYED
        moment = datetime.fromtimestamp(now, UTC)
        today = moment.date()
        visitor = visitor_hash(self.visitor_key, ip, user_agent, today, network=network)
        campaign_id = offer.campaign_id
        if is_bot(user_agent):
            reason = _BOT
        elif self.quality_checks and self.datacenter.contains(ip):
            reason = _DATACENTER
        elif flooding:
            reason = _RATE_LIMITED
        elif self.frequency.capped(visitor, campaign_id, today):
            reason = _FREQUENCY_CAPPED
        else:
            reason = _VALID
            self.frequency.add(visitor, campaign_id, today)
            day = self._day
            if day[0] != today:
                day = self._day = (today, today.isoformat())
            self.tally.add(campaign_id, day[1])
        self.buffer.add(
            (
                offer_id,
                moment,
                offer.slot_id,
                offer.creative_id,
                campaign_id,
                offer.publisher_id,
                visitor,
                reason,
                country,
                network,  # for the flush: the network's views per minute, across processes
                self.tag,  # whose claim the offer's view is, so a batch classified again gets its answers
            )
        )
        # The same answer whatever the classification: telling a bot it was spotted helps it.
        return Answer(202, raw=b'{"status":"recorded","offer":"' + offer_id.encode() + b'"}')


_REPLAYED = error_answer(409, "offer_replayed", "This offer's view has already been counted.")
_BOT, _DATACENTER, _RATE_LIMITED, _FREQUENCY_CAPPED, _VALID = (
    ViewReason.bot.value,
    ViewReason.datacenter.value,
    ViewReason.rate_limited.value,
    ViewReason.frequency_capped.value,
    ViewReason.valid.value,
)


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
