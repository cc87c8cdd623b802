"""The ad decision: which ad a slot shows, answered from memory (server/ads/inventory.py), with
nothing written to the database or Redis in the request; and what one process knows of the
others' counts that the decision depends on (a visitor over the frequency cap, a network over its
rate, a campaign's paced spend): learnt from its own view flushes and from one sync call per
interval (server/ads/process.py), so at most SYNC_INTERVAL (or one flush interval) stale across
processes, and exact within one. The view beacon and clicks on ads: server/ads/views.py."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec

from server.ads import offers, render
from server.ads.counting import NetworkWindows
from server.ads.inventory import CampaignEntry, CreativeEntry, Inventory, PublisherEntry, SlotEntry
from server.ads.service import SIZES
from server.ads.tables import SlotFallback, SlotStatus
from server.campaigns.tables import CampaignStatus
from server.core.deeplink import host_allowed
from server.tracking.classify import is_bot
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
_ACTIVE = SlotStatus.active.value


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


# --- the decision --------------------------------------------------------------------------------


class Answer:
    """What an ads endpoint answers: an HTTP status and a JSON body, given as a dict or, on the hot
    paths (an ad, a view), as its JSON text already built (`raw`); each is made from the other
    when asked for (the tests read `body`, the endpoint sends `raw`)."""

    __slots__ = ("status", "_body", "_raw")

    def __init__(self, status: int, body: dict[str, Any] | None = None, *, raw: bytes | None = None) -> None:
        if (body is None) == (raw is None):
            raise ValueError("an answer has either a body or its raw JSON")
        self.status = status
        self._body = body
        self._raw = raw

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            self._body = msgspec.json.decode(self._raw)
        return self._body

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = msgspec.json.encode(self._body)
        return self._raw

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.raw!r})"


# An ad chosen for a slot: (the creative in the slot's format, the format, its signed offer's token and
# id, the code of the publisher's tracked link in the campaign). A plain tuple: one per decision.
Offered = tuple[CreativeEntry, str, str, str, str]


def error_answer(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message}})


_UNSEEN: Any = object()
_UNKNOWN_SLOT = error_answer(
    404, "unknown_slot", "There is no ad slot with this key: copy the snippet again from your Ad slots page."
)


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
        # A fair rotation needs no secret randomness: the PRNG, seeded from the OS, without a system call per pick.
        self.rng = rng or random.Random()
        self.clock = clock
        self.base_url = inventory.base_url
        self.own_netloc = urlsplit(inventory.base_url).netloc.lower()
        self.network_rate = NetworkWindows(DECISIONS_PER_MINUTE, shared=shared)
        self._today: tuple[float, float, date] = (0.0, 0.0, date.min)
        self._iso: tuple[date, str] = (date.min, date.min.isoformat())
        self._base_json = msgspec.json.encode(self.base_url).decode()[1:-1]
        # Built once and kept (bounded): what the pages asking may show, the answers' JSON pieces.
        self._pages: dict[tuple[str, frozenset[str]], Answer | None] = {}
        self._heads: dict[int, tuple[CreativeEntry, str]] = {}
        self._codes: dict[str, str] = {}

    def reset(self) -> None:
        self.network_rate = NetworkWindows(DECISIONS_PER_MINUTE, shared=self.shared)

    def _day(self, now: float) -> tuple[date, float]:
        """The UTC day of `now` and the seconds since its midnight; the day's bounds are kept for the day."""
        start, end, today = self._today
        if not start <= now < end:
            today = datetime.fromtimestamp(now, UTC).date()
            start = datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp()
            end = start + DAY
            self._today = (start, end, today)
        return today, now - start

    def _fallback(self, slot: SlotEntry, reason: str) -> Answer:
        size = SIZES[slot.format]  # StrEnum keys: the stored string finds its member
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

    def _page(self, origin: str | None, referer: str | None, slot: SlotEntry) -> Answer | None:
        """None if the page asking (its Origin, else its Referer) may show the slot, else the
        error to answer. Remembered per (Origin, slot's domains) when the Origin names a page
        (a slot's pages share a few origins; referers name every page)."""
        if origin and origin != "null":
            key = (origin, slot.domains)
            verdict = self._pages.get(key, _UNSEEN)
            if verdict is not _UNSEEN:
                return verdict  # type: ignore[return-value]
            page = page_host(origin, None)
            if page is not None:
                verdict = self._verdict(page, slot)
                if len(self._pages) >= 10_000:
                    self._pages.clear()
                self._pages[key] = verdict
                return verdict
        return self._verdict(page_host(origin, referer), slot)

    def _verdict(self, page: tuple[str, str] | None, slot: SlotEntry) -> Answer | None:
        if page is None:
            return error_answer(
                403, "unknown_site", "The page showing this slot could not be told (no Origin or Referer header)."
            )
        if page[1] != self.own_netloc and not host_allowed(page[0], slot.domains):
            return error_answer(
                403,
                "site_not_allowed",
                f"This slot may not appear on {page[0]}: add the domain to the slot's site domains.",
            )
        return None

    def _head(self, creative: CreativeEntry, fmt: str) -> str:
        """The ad answer's JSON from the format to the frame URL's token, built once per creative."""
        held = self._heads.get(creative.creative_id)
        if held is not None and held[0] is creative:
            return held[1]
        size = SIZES[fmt]  # StrEnum keys: the stored string finds its member
        middle = msgspec.json.encode(
            {
                "format": fmt,
                "width": size.width,
                "height": size.height,
                "creative": {"id": creative.creative_id, "name": creative.name},
            }
        ).decode()[1:-1]
        head = f'{middle},"frame_url":"{self._base_json}/ads/f/'
        if len(self._heads) >= 100_000:
            self._heads.clear()
        self._heads[creative.creative_id] = (creative, head)
        return head

    def _code(self, code: str) -> str:
        """A link code as it goes into a JSON string (codes are URL-safe: this is a guard)."""
        held = self._codes.get(code)
        if held is None:
            held = msgspec.json.encode(code).decode()[1:-1]
            if len(self._codes) >= 100_000:
                self._codes.clear()
            self._codes[code] = held
        return held

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
        """What `/ads/decide` answers: the chosen ad's JSON (frame, view and click URLs), or why not."""
        chosen = await self.choose(slot_key, origin=origin, referer=referer, ip=ip, user_agent=user_agent, now=now)
        if type(chosen) is Answer:
            return chosen
        creative, fmt, token, offer_id, code = chosen
        base = self._base_json
        # The answer's JSON, built as text: every value but the creative's (escaped once, in
        # _head) is URL-safe base64 or a number. Keys in the order the embed script has always seen.
        return Answer(
            200,
            raw=(
                f'{{"status":"ad","offer":"{offer_id}",{self._head(creative, fmt)}{token}",'
                f'"view_url":"{base}/ads/v/{token}","click_url":"{base}/c/{self._code(code)}?o={token}",'
                f'"expires_in":{OFFER_TTL}}}'
            ).encode(),
        )

    async def choose(
        self,
        slot_key: str,
        *,
        origin: str | None,
        referer: str | None,
        ip: str,
        user_agent: str,
        now: float | None = None,
    ) -> Offered | Answer:
        """The ad for the slot, its offer signed (`Offered`), or the answer saying why there is none
        (an error or the slot's fallback). `decide` answers it as JSON; the no-script image
        (server/ads/noscript.py) shows its creative."""
        now = self.clock() if now is None else now
        slot = await self.inventory.slots.get(slot_key) if slot_key and len(slot_key) <= 24 else None
        if slot is None:
            return _UNKNOWN_SLOT
        refused = self._page(origin, referer, slot)
        if refused is not None:
            return refused
        network = truncate_ip(ip)
        if self.network_rate.over(network, now):
            return self._fallback(slot, "rate_limited")
        if slot.status != _ACTIVE or not slot.publisher_approved:
            return self._fallback(slot, "slot_paused")
        if is_bot(user_agent):
            return self._fallback(slot, "no_ad")  # the same answer as an empty slot: no hint for bots
        today, seconds = self._day(now)
        visitor = visitor_hash(self.visitor_key, ip, user_agent, today, network=network)
        publisher = await self.inventory.publishers.get(slot.publisher_id)
        candidates: list[tuple[int, CampaignEntry, int]] = []
        total = 0
        fmt = slot.format
        if publisher is not None:
            campaigns = self.inventory.campaigns
            day = self._iso_day(today)
            tally = self.tally
            frequency = self.frequency
            for campaign_id, (link_id, _) in publisher.links.items():
                entry = await campaigns.get(campaign_id)
                if entry is None:
                    continue
                if entry.cpm_price:
                    stored = entry.impressions_today if entry.day == today else 0
                    entry.extra_milli = tally.count(campaign_id, day, stored) * entry.cpm_price
                if (
                    fmt not in entry.creatives
                    or not can_serve(entry, publisher, today, seconds)
                    or frequency.capped(visitor, campaign_id, today)
                ):
                    continue
                candidates.append((entry.weight, entry, link_id))
                total += entry.weight
        if not candidates:
            return self._fallback(slot, "no_ad")
        if len(candidates) == 1:
            chosen = candidates[0]
        else:
            pick = self.rng.randrange(total)
            chosen = candidates[-1]
            for candidate in candidates:
                if pick < candidate[0]:
                    chosen = candidate
                    break
                pick -= candidate[0]
        _, entry, link_id = chosen
        group = entry.creatives[fmt]
        creative = group[0] if len(group) == 1 else self.rng.choice(group)
        token, offer_id = offers.issue(
            self.offer_key,
            slot_id=slot.slot_id,
            creative_id=creative.creative_id,
            campaign_id=entry.campaign_id,
            link_id=link_id,
            publisher_id=slot.publisher_id,
            expires_at=int(now) + OFFER_TTL,
        )
        return creative, fmt, token, offer_id, publisher.links[entry.campaign_id][1]  # type: ignore[union-attr]

    def _iso_day(self, today: date) -> str:
        held = self._iso
        if held[0] != today:
            held = self._iso = (today, today.isoformat())
        return held[1]
