"""Valid clicks counted once across every server process and host: one Lua call per flushed batch.

The redirect answers from memory and queues the click with a provisional reason (server/tracking/
service.py: Redirector). Duplicates, the per-network rate limit, click caps and CPC budgets are
decided here instead, when the click buffer writes its batch: the whole batch goes to Redis in one
EVALSHA, which classifies each click against counters every process shares (atomically: a script
runs alone), then the rows are stored with their final reason. A click's 302 never waits on Redis.

What the 302 does depend on (a campaign over its cap or budget sends visitors to its fallback URL)
comes from flags each process keeps in memory: set from its own flushes' answers, and from the
other processes' (a flush that finds a campaign full says so on a Redis channel). So the answer is
at most one flush interval stale; the count of valid clicks, and so what is billed, is exact.

Retries and replays count once. The duplicate check's key holds the click id of the visitor's
counted click, so a batch classified again (its database write failed, or a journal replayed after
a crash) finds its own clicks already counted and answers "valid" again without counting them twice.

Counters live in Redis: per campaign and UTC day, per campaign ever, per campaign, publisher and day.
A missing counter (a new day, a new campaign, Redis restarted empty) is seeded from the stored
valid clicks before the batch is classified (SET NX: the processes seeding at once agree).

The script touches keys it computes rather than declares: it is for one Redis (or one primary),
not Redis Cluster (docs/scaling.md says what to do there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from server.core import batch_counts, changes, process
from server.tracking.classify import Reason

log = logging.getLogger("affnet.tracking")

PREFIX = "affnet:clicks:"
CHANNEL = "affnet:clicks:full"  # {"c": campaign, "d": day, "r": reason, "p": publisher or null}
DEDUP_SECONDS = 3600  # the same visitor (its cookie) on the same link within an hour is one click
# The same address, browser build and languages on the same link within this many seconds is one
# click too, cookie or not: a double click, a reload, the back button and a second tap, and a
# client that keeps no cookie. Longer, and readers sharing a NAT's address would be taken for one.
NEAR_SECONDS = 30
# More clicks than this per minute from one network (an IPv4 /24 or IPv6 /48) stop counting: they
# still reach the landing page, but as invalid, so nobody can click up a publisher's earnings.
NETWORK_CLICKS_PER_MINUTE = 120
NETWORK_WINDOW_MS = 60_000
DAY_COUNTER_TTL = 3 * 86400  # a day's counters outlive the day by long enough for late batches
PROCESS_TALLY_TTL = 86400

# What the redirect leaves for the flush to decide, per click.
SETTLED = 0  # final already (a bot, a HEAD, a paused campaign, …): only counted towards the network's rate
RATE_ONLY = 1  # invalid for its own reason (an ad offer's), unless the network's rate says rate_limited
CANDIDATE = 2  # valid unless the rate, a cap, a budget or a duplicate says otherwise

# The script's answers, per click (0: keep the provisional reason).
_VALID, _RATE, _DUP, _CAP, _BUDGET = range(1, 6)
_REASONS = {_VALID: Reason.valid, _RATE: Reason.rate_limited, _DUP: Reason.duplicate}
_REASONS.update({_CAP: Reason.over_cap, _BUDGET: Reason.over_budget})

# One call per batch (server/core/batch_counts.py: the head reads the counters and network windows
# once, `save` writes them once), so thousands of clicks cost a few commands per distinct key.
# Rows: {kind, net, ms[, campaign, day counter, publisher counter, visitor's key, click id, address's
# key or ""]}: a click is a duplicate when the visitor's key (its cookie id) names an earlier click on
# the link within DEDUP_SECONDS, or the address's key (address, User-Agent, Accept-Language) one
# within NEAR_SECONDS.
CLASSIFY = (
    batch_counts.SCRIPT_HEAD
    + """
local answers = {}
for i, r in ipairs(p.rows) do
  local kind, net = r[1], r[2]
  local answer, flooding = 0, false
  if net > 0 then flooding = hit(net, r[3]) > p.rate end
  if kind > 0 and flooding then
    answer = 2
  elseif kind == 2 then
    local seen = redis.call('GET', r[7])
    local near = false
    if r[9] ~= '' then near = redis.call('GET', r[9]) end
    if seen == r[8] or near == r[8] then
      answer = 1 -- counted already: this batch is being classified again
    elseif seen or near then
      answer = 3 -- before the caps, so a batch classified again gives its duplicates the same reason
    else
      local c = p.campaigns[r[4]]
      local day, pub, total = value[r[5]], value[r[6]], value[c[1]]
      if c[2] >= 0 and day >= c[2] then answer = 4
      elseif c[3] >= 0 and pub >= c[3] then answer = 4
      elseif c[4] > 0 and c[5] >= 0 and (day + 1) * c[4] > c[5] then answer = 5
      elseif c[4] > 0 and c[6] >= 0 and (total + 1) * c[4] > c[6] then answer = 5
      else
        redis.call('SET', r[7], r[8], 'EX', p.dedup)
        if r[9] ~= '' then redis.call('SET', r[9], r[8], 'EX', p.near) end
        value[r[5]], value[r[6]], value[c[1]] = day + 1, pub + 1, total + 1
        dirty[r[5]], dirty[r[6]], dirty[c[1]] = true, true, true
        answer = 1
      end
    end
  end
  answers[i] = answer
end
local values = save()
local tally = p.prefix .. 'processes'
redis.call('HINCRBY', tally, p.process, #p.rows)
redis.call('EXPIRE', tally, p.tally_ttl)
return {1, answers, values}
"""
)


@dataclass(frozen=True, slots=True)
class Limits:
    """What bounds a campaign's valid clicks (None: no bound)."""

    cap_clicks_daily: int | None
    cap_publisher_clicks_daily: int | None
    cpc_price_minor: int  # 0: clicks cost nothing, budgets do not bound them
    daily_budget_minor: int | None
    total_budget_minor: int | None

    def over(self, day: int, total: int) -> Reason | None:
        """Whether one more valid click of the campaign would go over a cap or budget."""
        if self.cap_clicks_daily is not None and day >= self.cap_clicks_daily:
            return Reason.over_cap
        price = self.cpc_price_minor
        if price and self.daily_budget_minor is not None and (day + 1) * price > self.daily_budget_minor:
            return Reason.over_budget
        return Reason.over_budget if self.spent(total) else None

    def spent(self, total: int) -> bool:
        """Whether the total budget cannot pay one more valid click after `total` of them."""
        price, budget = self.cpc_price_minor, self.total_budget_minor
        return bool(price) and budget is not None and (total + 1) * price > budget


@dataclass(frozen=True, slots=True)
class Key:
    """A counter: a campaign's valid clicks on a day, ever, or one publisher's on a day."""

    campaign_id: int
    day: str = ""  # ISO date; "" for ever
    publisher_id: int | None = None

    @property
    def name(self) -> str:
        if not self.day:
            return f"{PREFIX}{self.campaign_id}:total"
        if self.publisher_id is None:
            return f"{PREFIX}{self.campaign_id}:day:{self.day}"
        return f"{PREFIX}{self.campaign_id}:pub:{self.publisher_id}:day:{self.day}"


Seed = Callable[[Key], Awaitable[int]]  # the valid clicks stored for a counter (server/tracking/service.py)
SeedTotal = Callable[[int], Awaitable[int]]  # a campaign's valid clicks ever (server/reports/traffic.py)
LimitsOf = Callable[[Iterable[int]], Awaitable[dict[int, Limits]]]


def _none(value: int | None) -> int:
    return -1 if value is None else value


class ClickCounter:
    """Classifies batches of clicks in Redis, and remembers which campaigns the answers showed full.

    Rows are the click table's columns (server/tracking/service.py: CLICK_COLUMNS) followed by the
    visitor's key and the address's key (the duplicate check's, see CLASSIFY), the click's network
    and what is left to decide (SETTLED, RATE_ONLY, CANDIDATE); `classify` returns them with their
    final reason and without those four. A row journaled before the visitor cookie has the network
    and what is left only (its duplicate key is the visitor hash), one journaled before this design
    only the table's columns, and is stored as it is."""

    def __init__(
        self,
        redis: Redis,
        *,
        columns: tuple[str, ...],
        seed: Seed,
        seed_total: SeedTotal,
        limits_of: LimitsOf,
        rate: int = NETWORK_CLICKS_PER_MINUTE,
        window_ms: int = NETWORK_WINDOW_MS,
        dedup_seconds: int = DEDUP_SECONDS,
        near_seconds: int = NEAR_SECONDS,
    ) -> None:
        self.redis = redis
        self._script = redis.register_script(CLASSIFY)
        self._seed_day, self._seed_total = seed, seed_total
        self._limits_of = limits_of
        self.rate, self.window_ms, self.dedup_seconds = rate, window_ms, dedup_seconds
        self.near_seconds = near_seconds
        self.process = process.name()
        self.width = len(columns)
        index = {name: i for i, name in enumerate(columns)}
        self._at = {name: index[name] for name in ("click_id", "clicked_at", "link", "campaign", "publisher")}
        self._at.update(visitor=index["visitor_hash"], reason=index["reason"])
        self.clear()

    def clear(self) -> None:
        """Forget campaigns' terms and what earlier answers showed (also: the tests' Redis and
        database are emptied between tests)."""
        self.limits: dict[int, Limits] = {}  # by campaign, read at the flush (`limits_of`)
        self.full: dict[int, tuple[str, Reason]] = {}  # campaign -> (day, over_cap | over_budget)
        self.total_spent: set[int] = set()  # campaigns whose total budget cannot pay one more click
        self.publisher_full: set[tuple[int, int, str]] = set()  # (campaign, publisher, day)
        self.flagged = False  # any of the three holds something: the redirect asks `over` only then

    # --- the request path: no I/O ---------------------------------------------------------------

    def over(self, campaign_id: int, publisher_id: int, day: str) -> Reason | None:
        """Why a click of this campaign would not count, as this process's last flushes saw it."""
        if campaign_id in self.total_spent:
            return Reason.over_budget
        full = self.full.get(campaign_id)
        if full is not None and full[0] == day:
            return full[1]
        if (campaign_id, publisher_id, day) in self.publisher_full:
            return Reason.over_cap
        return None

    def drop_campaign(self, campaign_id: int) -> None:
        """The campaign changed (its cap, budget or status): forget what was known of it."""
        self.full.pop(campaign_id, None)
        self.total_spent.discard(campaign_id)
        self.publisher_full = {k for k in self.publisher_full if k[0] != campaign_id}
        self.limits.pop(campaign_id, None)
        self.flagged = bool(self.full or self.total_spent or self.publisher_full)

    # --- the flush ---------------------------------------------------------------------------------

    async def classify(self, rows: list[tuple]) -> list[tuple]:
        """The rows with their final reasons, counted once in Redis (raises if Redis cannot answer:
        the buffer keeps the rows and tries again)."""
        width = self.width
        todo = [i for i, row in enumerate(rows) if len(row) in (width + 2, width + 4)]
        if not todo:
            return [row[:width] for row in rows]
        payload, keys = await self._payload([rows[i] for i in todo])
        by_name = {key.name: key for key in keys}

        async def seed(name: str) -> tuple[int, int | None]:
            # Day counters from the raw clicks (retention keeps them well past a day); the total from
            # the rollups and the clicks since, as old raw clicks may have been dropped.
            key = by_name[name]
            if key.day:
                return await self._seed_day(key), DAY_COUNTER_TTL
            return await self._seed_total(key.campaign_id), None

        _, answers, values = await batch_counts.count(self.redis, self._script, payload, seed, what="click")
        news = self._learn(keys, [int(v) for v in values])
        if news:
            await self._tell(news)
        at_reason = self._at["reason"]
        out = [row[:width] for row in rows]
        for i, code in zip(todo, answers, strict=True):
            reason = _REASONS.get(int(code))
            if reason is not None:
                row = out[i]
                out[i] = (*row[:at_reason], reason.value, *row[at_reason + 1 :])
        return out

    async def _payload(self, rows: list[tuple]) -> tuple[bytes, list[Key]]:
        at = self._at
        keys: dict[Key, int] = {}
        campaigns: dict[int, int] = {}
        nets: dict[str, int] = {}
        days: dict[int, str] = {}
        wanted = {row[at["campaign"]] for row in rows if row[-1] == CANDIDATE}
        unknown = wanted - self.limits.keys()
        if unknown:  # once per campaign, and again after it changed (drop_campaign)
            self.limits.update(await self._limits_of(unknown))

        def key(k: Key) -> int:
            index = keys.get(k)
            if index is None:
                index = keys[k] = len(keys) + 1
            return index

        # A batch holds a few (campaign, publisher, day)s for thousands of clicks: their counters'
        # indexes are worked out once each (`combos`), not per click.
        combos: dict[tuple[int, int, int], tuple[int, int, int] | None] = {}
        at_moment, at_campaign, at_publisher = at["clicked_at"], at["campaign"], at["publisher"]
        at_visitor, at_link, at_click = at["visitor"], at["link"], at["click_id"]
        seen, near = f"{PREFIX}seen:", f"{PREFIX}near:"
        width = self.width
        encoded = []
        append = encoded.append
        for row in rows:
            network, kind = row[-2], row[-1]
            net = 0
            if network:
                net = nets.get(network) or nets.setdefault(network, len(nets) + 1)
            stamp = row[at_moment].timestamp()
            ts = int(stamp * 1000)
            if kind != CANDIDATE:
                append([kind, net, ts])
                continue
            campaign_id, publisher_id = row[at_campaign], row[at_publisher]
            combo_key = (campaign_id, publisher_id, int(stamp // 86400))
            combo = combos.get(combo_key, False)
            if combo is False:
                combo = combos[combo_key] = self._combo(campaign_id, publisher_id, stamp, campaigns, key, days)
            if combo is None:  # campaigns are never deleted; should one be, its click is not counted
                append([SETTLED, net, ts])
                continue
            link = row[at_link]
            if len(row) == width + 4:  # {…columns, visitor's key, address's key, network, kind}
                keys_of = (f"{seen}v:{row[width]}:{link}", row[at_click], f"{near}{row[width + 1]}:{link}")
            else:  # journaled before the visitor cookie: the network + User-Agent hash, for the hour
                keys_of = (f"{seen}{row[at_visitor]}:{link}", row[at_click], "")
            append([kind, net, ts, *combo, *keys_of])
        for campaign_id in campaigns:
            key(Key(campaign_id))
        key_list = list(keys)
        campaign_rows = [None] * len(campaigns)
        for campaign_id, c in campaigns.items():
            limits = self.limits[campaign_id]
            campaign_rows[c - 1] = [
                keys[Key(campaign_id)],
                _none(limits.cap_clicks_daily),
                _none(limits.cap_publisher_clicks_daily),
                limits.cpc_price_minor,
                _none(limits.daily_budget_minor),
                _none(limits.total_budget_minor),
            ]
        payload = {
            "prefix": PREFIX,
            "nets_prefix": PREFIX + "net:",
            "rate": self.rate,
            "window": self.window_ms,
            "dedup": self.dedup_seconds,
            "near": self.near_seconds,
            "process": self.process,
            "tally_ttl": PROCESS_TALLY_TTL,
            "keys": [k.name for k in key_list],
            "nets": list(nets),
            "campaigns": campaign_rows,
            "rows": encoded,
        }
        return batch_counts.encode(payload), key_list

    def _combo(
        self,
        campaign_id: int,
        publisher_id: int,
        stamp: float,
        campaigns: dict[int, int],
        key: Callable[[Key], int],
        days: dict[int, str],
    ) -> tuple[int, int, int] | None:
        """A click's campaign (its index in the payload) and its day's counters, campaign and
        publisher (their indexes); None for a campaign without limits (one deleted)."""
        if self.limits.get(campaign_id) is None:
            return None
        c = campaigns.get(campaign_id)
        if c is None:
            c = campaigns[campaign_id] = len(campaigns) + 1
        day = batch_counts.utc_day(datetime.fromtimestamp(stamp, UTC), days)
        return c, key(Key(campaign_id, day)), key(Key(campaign_id, day, publisher_id))

    def _learn(self, keys: list[Key], values: list[int]) -> list[dict]:
        """Keep what the counters now say about the campaigns of the batch, for the next redirects;
        return what is new, for the other processes."""
        by_key = dict(zip(keys, values, strict=True))
        news: list[dict] = []
        for key, value in by_key.items():
            limits = self.limits.get(key.campaign_id)
            if limits is None:
                continue
            if key.publisher_id is not None:
                cap = limits.cap_publisher_clicks_daily
                if cap is not None and value >= cap:
                    news.append({"c": key.campaign_id, "d": key.day, "r": Reason.over_cap.value, "p": key.publisher_id})
            elif key.day:
                over = limits.over(value, by_key.get(Key(key.campaign_id), 0))
                if over is not None:
                    news.append({"c": key.campaign_id, "d": key.day, "r": over.value, "p": None})
            elif limits.spent(value):
                news.append({"c": key.campaign_id, "d": "", "r": Reason.over_budget.value, "p": None})
        return [item for item in news if self.heard(item)]

    def heard(self, news: dict) -> bool:
        """Set the flag a flush's answer calls for (here or in another process); True if it is new."""
        campaign_id, day, publisher_id = news["c"], news["d"], news["p"]
        if publisher_id is not None:
            entry = (campaign_id, publisher_id, day)
            if entry in self.publisher_full:
                return False
            if len(self.publisher_full) > 100_000:  # earlier days' entries go; today's are heard again
                self.publisher_full.clear()
            self.publisher_full.add(entry)
        elif not day:
            if campaign_id in self.total_spent:
                return False
            self.total_spent.add(campaign_id)
        else:
            flag = (day, Reason(news["r"]))
            if self.full.get(campaign_id) == flag:
                return False
            self.full[campaign_id] = flag
        self.flagged = True
        return True

    async def _tell(self, news: list[dict]) -> None:
        try:
            await self.redis.publish(CHANNEL, json.dumps(news))
        except Exception:  # noqa: BLE001 - each process still learns from its own next flush
            log.warning("could not tell the other processes that campaigns are full", exc_info=True)


async def listen(redis: Redis, counter: ClickCounter) -> None:
    """Take the other processes' news of full campaigns until cancelled (a lost channel: each process
    still learns from its own next flush)."""

    def heard(_channel: str, data: str) -> None:
        for news in json.loads(data):
            counter.heard(news)

    await changes.follow(redis, (CHANNEL,), heard, what="full-campaigns")
