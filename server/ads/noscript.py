"""Ads for readers without JavaScript: the `<noscript>` image the WordPress plugin prints in a slot
(`/ads/n/KEY/img`) and the link around it (`/ads/n/KEY/go`).

The image request makes a decision for the slot as the embed script's does (the page is named by
its Referer: an <img> sends no Origin), and counts the offer's view at once by the no-script
rule: without script nothing can measure whether the ad was on screen, so the image having been
fetched is the view. It goes through the view beacon's path (server/ads/views.py), so it counts
once per offer and is classified and stored like any other view. The offer's signed click URL is
remembered for this reader in Redis (every process and host sees it) for NOSCRIPT_TTL, so the link,
a request with nothing in it but the slot's key, sends the same reader through that click."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.ads.decision import OFFER_TTL, Answer, Decider
from server.ads.views import Views

log = logging.getLogger("affnet.ads")

# How long a reader's no-script ad stays clickable: well inside its offer's hour, so a remembered
# click is never one the offer's expiry has already made invalid.
NOSCRIPT_TTL = OFFER_TTL // 2
_PREFIX = "affnet:ads:noscript:"


class NoScript:
    """The no-script image ad of a slot and its click, for one reader (IP address and User-Agent)."""

    def __init__(self, decider: Decider, views: Views, redis: Redis | None, reader_key: bytes) -> None:
        self.decider = decider
        self.views = views
        self.redis = redis
        self.reader_key = reader_key
        self._clicks = decider.base_url + "/c/"
        self._media = decider.base_url + "/media/"
        self._local: dict[str, tuple[str, float]] = {}  # without Redis (never in a deployment): this process only
        self._warned = 0.0

    def _reader(self, slot_key: str, ip: str, user_agent: str) -> str:
        """The Redis key of the reader's ad in the slot: a keyed hash, so neither address nor
        User-Agent is stored."""
        message = f"affnet.noscript-reader\x00{slot_key}\x00{ip}\x00{user_agent}".encode("utf-8", "surrogatepass")
        mac = hmac.new(self.reader_key, message, hashlib.sha256)
        return _PREFIX + mac.hexdigest()[:32]

    async def image(
        self, slot_key: str, *, origin: str | None, referer: str | None, ip: str, user_agent: str, country: str
    ) -> str | None:
        """The image to show this reader in the slot (affnet's copy of the creative), its view
        counted; None when there is no image ad to show (unknown slot, a page not on the slot's
        sites, no ad, a text ad), and then nothing is counted."""
        chosen = await self.decider.choose(slot_key, origin=origin, referer=referer, ip=ip, user_agent=user_agent)
        if type(chosen) is Answer:
            return None  # an error or the slot's fallback: no ad
        creative, _, token, _, code = chosen
        if not creative.image_url.startswith(self._media):
            return None  # a text ad (a native slot): nothing to draw as an image
        await self.views.record(token, ip=ip, user_agent=user_agent, country=country)
        # The click the ad frame would link (server/http/ads/public.py), for the link around the image.
        await self._remember(self._reader(slot_key, ip, user_agent), f"{self._clicks}{code}?o={token}")
        return creative.image_url

    async def click_url(self, slot_key: str, *, ip: str, user_agent: str) -> str | None:
        """The signed click URL of the ad this reader was last shown in the slot without script
        (exactly the ad frame's), or None if there is none still remembered."""
        url = await self._recall(self._reader(slot_key, ip, user_agent))
        return url if url is not None and url.startswith(self._clicks) else None

    async def _remember(self, key: str, click_url: str) -> None:
        if self.redis is None:
            if len(self._local) >= 100_000:
                self._local.clear()
            self._local[key] = (click_url, time.monotonic() + NOSCRIPT_TTL)
            return
        try:
            await self.redis.set(key, click_url, ex=NOSCRIPT_TTL)
        except (RedisError, OSError) as exc:  # the image is shown all the same; its link will say it expired
            self._warn(exc)

    async def _recall(self, key: str) -> str | None:
        if self.redis is None:
            held = self._local.get(key)
            return held[0] if held is not None and held[1] > time.monotonic() else None
        try:
            value = await self.redis.get(key)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return None
        return value.decode("ascii", "replace") if isinstance(value, bytes) else value

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.warning("Redis unavailable for no-script ads (%s): their links answer 'expired'", exc)
