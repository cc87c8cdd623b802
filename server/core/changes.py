"""News that a campaign changed, for every cache of it in every server process.

A domain that changes a campaign or a membership calls `campaign_changed`; the caches that hold
campaign terms (the click redirect's links, the ad inventory) register here at startup. The
news reaches this process's caches at once and the other processes over a Redis channel; a
cache's own TTL bounds staleness should a message be lost. The caches sit above the domains that
change campaigns, so the news travels through this module rather than an import back up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

log = logging.getLogger("affnet.changes")

CHANNEL = "affnet:campaign-changed"
ALL = "all"  # the message that drops every campaign (network_changed)


class CampaignCache(Protocol):
    def drop_campaign(self, campaign_id: int) -> None: ...

    def clear(self) -> None: ...


_caches: list[CampaignCache] = []
_redis: Redis | None = None


def register(cache: CampaignCache, redis: Redis | None) -> None:
    global _redis
    _caches.append(cache)
    _redis = redis or _redis


def unregister(cache: CampaignCache) -> None:
    if cache in _caches:
        _caches.remove(cache)


async def campaign_changed(campaign_id: int) -> None:
    """Drop a campaign's cached terms here and tell the other processes to do the same."""
    for cache in _caches:
        cache.drop_campaign(campaign_id)
    if _redis is not None:
        try:
            await _redis.publish(CHANNEL, str(campaign_id))
        except Exception:  # noqa: BLE001 - the TTL bounds staleness if Redis is away
            log.warning("could not publish invalidation of campaign %s", campaign_id)


async def network_changed() -> None:
    """A network-wide setting the caches hold changed (the click rules switched off network-wide):
    every process drops every cached campaign."""
    for cache in _caches:
        cache.clear()
    if _redis is not None:
        try:
            await _redis.publish(CHANNEL, ALL)
        except Exception:  # noqa: BLE001 - the TTL bounds staleness if Redis is away
            log.warning("could not publish a network-wide invalidation")


async def follow(
    redis: Redis,
    channels: tuple[str, ...],
    handle: Callable[[str, str], None],
    *,
    lost: Callable[[], None] | None = None,
    what: str,
) -> None:
    """Call `handle(channel, data)` for every message on `channels` until cancelled. After a Redis
    error: `lost()` (what was missed may be stale), then subscribe again a second later."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(*channels)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        handle(_text(message["channel"]), _text(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.warning("%s channel lost; retrying", what, exc_info=True)
            if lost is not None:
                lost()
            await asyncio.sleep(1.0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def listen(redis: Redis, *caches: CampaignCache) -> None:
    """Apply other processes' invalidations until cancelled; after a lost channel, clear the caches."""

    def drop(_channel: str, data: str) -> None:
        if data == ALL:
            clear()
        elif data.lstrip("-").isdigit():
            for cache in caches:
                cache.drop_campaign(int(data))

    def clear() -> None:
        for cache in caches:
            cache.clear()

    await follow(redis, (CHANNEL,), drop, lost=clear, what="campaign invalidation")
