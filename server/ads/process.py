"""The ads side of one server process: its caches, the decider, the view beacon, offers on clicks,
the impression buffer, and what it shares with the other processes through Redis: the buffer's
writer classifies each batch of views in one call (`AdServer.store`), and a task shares decisions
per network and reads campaigns' impression counts every SYNC_INTERVAL (`AdServer.sync`)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis

from server.ads import render
from server.ads.counting import DecisionSync, ViewCounter
from server.ads.decision import CLAIM_TTL, FLUSH_INTERVAL, SYNC_INTERVAL, Decider, Frequency, ImpressionTally
from server.ads.inventory import Inventory, SpendMeter
from server.ads.noscript import NoScript
from server.ads.service import IMPRESSION_COLUMNS, valid_impressions_on
from server.ads.tables import ViewReason
from server.ads.views import OfferClaims, OfferClicks, Views
from server.core.batch_counts import per_call, utc_day
from server.tracking.buffer import EventBuffer
from server.tracking.journal import Journal

log = logging.getLogger("affnet.ads")


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
        self.noscript = NoScript(self.decider, self.views, redis, visitor_key)
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
            # A Redis call per batch_counts.ROWS_PER_CALL views; stored in one write.
            stored: list[tuple] = []
            counts = {}
            for part in per_call(rows):
                counted = await self.counter.classify(part, cap=self.frequency.cap, rate=self.views.network_rate.limit)
                stored += counted.rows
                for visitor, campaign_id, day, views in counted.frequency:
                    self.frequency.learn(visitor, campaign_id, day, views)
                for key, views in counted.impressions.items():
                    counts[key] = max(views, counts.get(key, 0))
            await self._writer(stored)
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
