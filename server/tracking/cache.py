"""What the click redirect needs, held in process memory.

Entries load from the database on first use and live TTL seconds. A change to a campaign or a
membership drops that campaign's entries at once in this process and, over a Redis channel, in
every other server process, so a paused campaign stops taking traffic within moments everywhere
(and within TTL at worst, should a message be lost): server/core/changes.py carries the news.

When the database does not answer, links keep working from the last terms this process loaded:
an expired entry whose reload fails is served stale (counted, said once per interval in the log,
and by /healthz), and its reload is tried again at most every RETRY_INTERVAL seconds per code, so
a dead database is not asked once per click. A code with no terms in memory then gets
ServiceUnavailable (a 503 "try again in a moment" with Retry-After), also without a query per
request. An entry dropped by a campaign's change is never served stale: a paused campaign stays
paused."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from server.core.errors import ServiceUnavailable
from server.core.logthrottle import LogThrottle

log = logging.getLogger("affnet.tracking")

TTL = 30.0
MISSING_TTL = 5.0  # unknown codes are remembered briefly, so random codes cannot hammer the database
MAX_ENTRIES = 200_000
RETRY_INTERVAL = 5.0  # while loads fail, each code's terms are asked for at most this often
STALE_WAIT = 1.0  # how long a request waits for its expired terms' reload before it is served the stale ones
LOAD_WAIT = 5.0  # how long a request with no terms in memory waits for their load before a 503
STALE_REPORT_WINDOW = 60.0  # a stale link not asked for this long is no longer counted as served stale


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
    # The click-quality reasons switched off for this link (its campaign's advertiser's and the
    # network's, server/tracking/click_rules.py): read by the redirect only when such a reason fires.
    rules_off: frozenset[str] = frozenset()


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
        self._loading: dict[str, asyncio.Task[T | None]] = {}
        # Codes whose last load failed: [served stale since, last failed load]; and codes with no
        # terms to serve whose load failed: when to ask the database again.
        self._stale: dict[str, list[float]] = {}
        self._down: dict[str, float] = {}
        self.failed_loads = 0
        self.failures = LogThrottle(log, "link loads")

    def fresh(self, code: str) -> T | None:
        """What `get` would answer from memory at once, None if it would have to load it (or it is
        known not to exist): for callers that cannot wait (server/http/transport.py)."""
        entry = self._entries.get(code)
        return entry[1] if entry is not None and entry[0] > self._clock() else None

    async def get(self, code: str) -> T | None:
        # The hot path: a fresh entry (or a stale one within its retry interval) is a dict lookup
        # and one clock compare. Anything else is `_refresh`'s.
        entry = self._entries.get(code)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return await self._refresh(code, entry)

    async def _refresh(self, code: str, entry: tuple[float, T | None] | None) -> T | None:
        stale = entry[1] if entry is not None else None
        # One load per code at a time: a burst of clicks on a cold link costs one query.
        task = self._loading.get(code)
        if task is None:
            if stale is None:
                retry_at = self._down.get(code)
                if retry_at is not None and self._clock() < retry_at:
                    raise _unavailable()
            task = asyncio.get_running_loop().create_task(self._load(code, entry))
            task.add_done_callback(retrieved)
            self._loading[code] = task
        elif stale is not None:
            return stale  # being reloaded already: these terms are at most a load's time old
        try:
            # The request that finds its terms expired waits for the reload, not for a database
            # that hangs: past STALE_WAIT it is answered from the stale terms (the load goes on).
            async with asyncio.timeout(STALE_WAIT if stale is not None else LOAD_WAIT):
                return await asyncio.shield(task)
        except TimeoutError:
            if stale is not None:
                return stale
            raise _unavailable() from None

    async def _load(self, code: str, entry: tuple[float, T | None] | None) -> T | None:
        try:
            target = await self._loader(code)
        except Exception as exc:
            self.failed_loads += 1
            self.failures.failed("loading the terms of %r failed; links are served from memory meanwhile", code)
            now = self._clock()
            if entry is not None and entry[1] is not None and self._entries.get(code) is entry:
                # Still the last known terms (no change dropped them meanwhile): serve them until
                # the next attempt, from the hot path.
                self._entries[code] = (now + RETRY_INTERVAL, entry[1])
                stale = self._stale.get(code)
                if stale is None:
                    self._stale[code] = [now, now]
                else:
                    stale[1] = now
                return entry[1]
            if len(self._down) >= MAX_ENTRIES:
                self._down.clear()
            self._down[code] = now + RETRY_INTERVAL
            raise _unavailable() from exc
        finally:
            self._loading.pop(code, None)
        self._store(code, target)
        if self._stale:
            self._stale.pop(code, None)
        if self._down:
            self._down.pop(code, None)
        return target

    def _store(self, code: str, target: T | None) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
            self._by_campaign.clear()
            self._stale.clear()
        self._entries[code] = (self._clock() + (TTL if target else MISSING_TTL), target)
        if target is not None:
            self._by_campaign.setdefault(target.campaign_id, set()).add(code)

    def stale(self) -> tuple[int, float]:
        """How many links are being served from stale terms (their last reload failed within
        STALE_REPORT_WINDOW), and for how long the oldest of them has been (seconds; 0 if none)."""
        now = self._clock()
        oldest = now
        for code, (since, last_failed) in list(self._stale.items()):
            if now - last_failed > STALE_REPORT_WINDOW:
                del self._stale[code]  # not asked for since: no longer served
            else:
                oldest = min(oldest, since)
        return len(self._stale), now - oldest

    def drop_campaign(self, campaign_id: int) -> None:
        for code in self._by_campaign.pop(campaign_id, ()):
            self._entries.pop(code, None)
            self._stale.pop(code, None)

    def clear(self) -> None:
        self._entries.clear()
        self._by_campaign.clear()
        self._stale.clear()
        self._down.clear()


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Links cannot be looked up right now. Please try again in a moment.",
        retry_after=math.ceil(RETRY_INTERVAL),
        code="links_unavailable",
    )


def retrieved(task: asyncio.Task) -> None:
    """A load's done callback: waiters re-raise a failed load's error; one nobody waited for (the
    visitor left, or a stale entry was served meanwhile) is not "lost"."""
    if not task.cancelled():
        task.exception()
