"""What the click redirect needs, held in process memory.

Entries load from the database on first use and live TTL seconds. A change to a campaign or a
membership drops that campaign's entries at once in this process and, over a Redis channel, in
every other server process, so a paused campaign stops taking traffic within moments everywhere
(and within TTL at worst, should a message be lost): server/core/changes.py carries the news."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("affnet.tracking")

TTL = 30.0
MISSING_TTL = 5.0  # unknown codes are remembered briefly, so random codes cannot hammer the database
MAX_ENTRIES = 200_000


@dataclass(frozen=True, slots=True)
class Target:
    """A link and the terms of its campaign, as the redirect sees them."""

    link_id: int
    campaign_id: int
    publisher_id: int
    member: bool  # the membership is approved
    campaign_status: str
    landing_url: str
    allowed_domains: frozenset[str]
    fallback_url: str
    click_id_param: str
    forward_subs: tuple[str, ...]


class Cached(Protocol):
    campaign_id: int


T = TypeVar("T", bound=Cached)


class LinkCache(Generic[T]):
    """Entries by key (a link's code for the redirect, its id for conversion intake), each knowing
    its campaign, so a change to the campaign drops them all."""

    def __init__(
        self, loader: Callable[[str], Awaitable[T | None]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._loader = loader
        self._clock = clock
        self._entries: dict[str, tuple[float, T | None]] = {}
        self._by_campaign: dict[int, set[str]] = {}
        self._loading: dict[str, asyncio.Future[T | None]] = {}

    async def get(self, code: str) -> T | None:
        entry = self._entries.get(code)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        # One load per code at a time: a burst of clicks on a cold link costs one query.
        pending = self._loading.get(code)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self._loading[code] = future
        try:
            target = await self._loader(code)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            self._loading.pop(code, None)
        self._store(code, target)
        future.set_result(target)
        return target

    def _store(self, code: str, target: T | None) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
            self._by_campaign.clear()
        self._entries[code] = (self._clock() + (TTL if target else MISSING_TTL), target)
        if target is not None:
            self._by_campaign.setdefault(target.campaign_id, set()).add(code)

    def drop_campaign(self, campaign_id: int) -> None:
        for code in self._by_campaign.pop(campaign_id, ()):
            self._entries.pop(code, None)

    def clear(self) -> None:
        self._entries.clear()
        self._by_campaign.clear()
