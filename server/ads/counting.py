"""What the ad server counts for every server process and host at once, in Redis, one call per batch.

The decision and the view beacon answer from memory. What must hold across processes is decided
later, in one Lua call (a script runs alone, so it is atomic):

- at each flush of the impression buffer (`ViewCounter`): an offer's view is claimed once, views
  per network per minute, valid views per visitor and campaign per UTC day (the frequency cap),
  and valid impressions per campaign per day (for pacing). The view row's reason is decided there,
  before it is stored; the impression's unique offer is the backstop.
- per click on an ad (`ClickClaims`, from the click redirect; ad clicks only, a small share of
  clicks): the offer's click is claimed once, and is valid only if its view was claimed.
- every sync interval (`DecisionSync`): this process's decisions per network are added to the
  shared per-minute windows, and the shared impression counts of the campaigns it may serve are
  read back (pacing and budgets).

Retries and replays count once: a view's claim holds the claiming process's tag and the answer it
got, so a batch classified again (its database write failed, or a journal was replayed after a
crash) gets the same answers and counts nothing twice. The scripts touch keys they compute: they
are for one Redis (or one primary), not Redis Cluster."""

from __future__ import annotations

import os
import time
from base64 import urlsafe_b64encode
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from redis.asyncio import Redis

from server.ads.tables import ViewReason
from server.core import batch_counts

PREFIX = "affnet:ad:"
VIEW_KEY = PREFIX + "view:"
CLICK_KEY = PREFIX + "click:"
WINDOW_SECONDS = 60.0
DAY_COUNTER_TTL = 3 * 86400  # a day's counters outlive the day by long enough for late batches
FREQUENCY_TTL = 2 * 86400

# The view script's answers, per row.
_VALID, _BOT, _RATE, _FREQUENCY, _DUPLICATE = 1, 2, 3, 4, 5
_VIEW_REASONS = {  # _BOT: the row keeps the reason it was answered with (_SETTLED)
    _VALID: ViewReason.valid,
    _RATE: ViewReason.rate_limited,
    _FREQUENCY: ViewReason.frequency_capped,
}

# Reasons a view has when it is answered, which the flush keeps (it is never counted): the script
# answers _BOT for them, and the row keeps its own.
_SETTLED = frozenset((ViewReason.bot.value, ViewReason.datacenter.value))

# Helpers of every script: a claim's value is "<owner>:<answer>", so its owner gets its answer again.
_CLAIMED = """
local function answer_of(held, owner)
  if string.sub(held, 1, #owner + 1) == owner .. ':' then return tonumber(string.sub(held, #owner + 2)) end
  return nil
end
"""

# One call per batch (server/core/batch_counts.py: the head reads the counters and network windows
# once, `save` writes them once). Rows: {offer, tag, net, ms, bot, frequency key, counter}.
VIEWS = (
    batch_counts.SCRIPT_HEAD
    + _CLAIMED
    + """
local answers, seen = {}, {}
for i, r in ipairs(p.rows) do
  local claim = p.prefix .. 'view:' .. r[1]
  local held = redis.call('GET', claim)
  local answer, n = 0, 0
  if held then
    answer = answer_of(held, r[2]) or 5 -- ours already (a replay), or another process's: a duplicate
  else
    local hits = 0
    if r[3] > 0 then hits = hit(r[3], r[4]) end
    if r[5] == 1 then
      answer = 2
    elseif hits > p.rate then
      answer = 3
    else
      n = tonumber(redis.call('GET', r[6]) or '0')
      if n >= p.cap then
        answer = 4
      else
        n = redis.call('INCR', r[6])
        if n == 1 then redis.call('EXPIRE', r[6], p.frequency_ttl) end
        value[r[7]] = value[r[7]] + 1
        dirty[r[7]] = true
        answer = 1
      end
    end
    redis.call('SET', claim, r[2] .. ':' .. answer, 'EX', p.claim_ttl)
  end
  answers[i], seen[i] = answer, n
end
return {1, answers, seen, save()}
"""
)

# Rows: {offer, claimant, 1 if the clicking process saw the offer's view itself}. Answers: 0 the
# offer is good, 2 replayed (another click claimed it), 3 not viewed. (Rows, not one: a batch of
# clicks could be settled alike.)
CLICKS = (
    _CLAIMED
    + """
local p = cjson.decode(ARGV[1])
local answers = {}
for i, r in ipairs(p.rows) do
  local claim = p.prefix .. 'click:' .. r[1]
  local held = redis.call('GET', claim)
  local answer
  if held then
    answer = answer_of(held, r[2]) or 2
  else
    if r[3] == 1 or redis.call('EXISTS', p.prefix .. 'view:' .. r[1]) == 1 then answer = 0 else answer = 3 end
    redis.call('SET', claim, r[2] .. ':' .. answer, 'EX', p.claim_ttl)
  end
  answers[i] = answer
end
return answers
"""
)

# Nets: {net, first hit ms, hits} of decisions not yet shared (0 hits: a network watched, only read);
# counters: impression counters to read.
SYNC = """
local p = cjson.decode(ARGV[1])
local windows = {}
for i, w in ipairs(p.nets) do
  local key = p.prefix .. 'dnet:' .. w[1]
  local h = redis.call('HMGET', key, 's', 'n')
  local s, n = tonumber(h[1]), tonumber(h[2]) or 0
  if w[3] == 0 then
    windows[i] = {s or 0, n} -- only watched: read
  else
    if s == nil or w[2] - s >= p.window then s, n = w[2], 0 end
    n = n + w[3]
    redis.call('HSET', key, 's', s, 'n', n)
    redis.call('PEXPIRE', key, 2 * p.window)
    windows[i] = {s, n}
  end
end
local counts = {}
for i, key in ipairs(p.counters) do counts[i] = tonumber(redis.call('GET', key) or '-1') end
return {windows, counts}
"""


def impressions_key(campaign_id: int, day: str) -> str:
    """Valid impressions of a campaign on a UTC day (ISO date), counted by the view flush."""
    return f"{PREFIX}imp:{campaign_id}:{day}"


def process_tag() -> str:
    """What marks the views one server process claims (random: process ids repeat across hosts)."""
    return urlsafe_b64encode(os.urandom(6)).decode()


# --- in process: a network's requests per minute --------------------------------------------------


class NetworkWindows:
    """Requests per network (IPv4 /24, IPv6 /48) in one-minute windows that start at a network's
    first request. Counted here at once, so one process alone is exact; with `shared`, a network's
    hits are also handed to `DecisionSync` once it has made `share_from` of them in a window here
    (all of them, from the first), which adds them to the windows every process shares, and what it
    learns back stops the network here too. A network this process has seen at over half its limit
    is read back at every sync even without new hits here.

    So across P processes a network gets at most limit + P × (share_from − 1) requests a window,
    plus what each process answers in one sync interval before it learns the network is over.
    Sharing every network's every hit would cost Redis more per decision than a view costs (the
    bench's visitors each come from a network of their own): the threshold keeps the one-off
    visitors, nearly all of them, out of Redis."""

    def __init__(
        self, limit: int, window: float = WINDOW_SECONDS, *, shared: bool = False, share_from: int | None = None
    ) -> None:
        self.limit = limit
        self.window = window
        self.shared = shared
        self.share_from = max(1, limit // 20) if share_from is None else max(1, share_from)
        self._local: dict[str, tuple[float, int]] = {}
        self._learnt: dict[str, tuple[float, int]] = {}  # (window start, hits) as Redis last said
        self._unsent: dict[str, list] = {}  # network -> [first hit, hits] not yet handed over
        self._sending: dict[str, list] = {}  # handed over, not yet learnt back

    def over(self, network: str, now: float) -> bool:
        start, count = self._local.get(network, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if len(self._local) > 200_000:
            self._local = {k: v for k, v in self._local.items() if now - v[0] < self.window}
        self._local[network] = (start, count + 1)
        if count + 1 > self.limit:
            return True
        if not self.shared or count + 1 < self.share_from:
            return False
        unsent = self._unsent.get(network)
        if unsent is None:
            # The window's hits so far here, all handed over at once (one only, past the threshold).
            unsent = self._unsent[network] = [start, 0 if count + 1 > self.share_from else count]
        unsent[1] += 1
        learnt = self._learnt.get(network)
        if learnt is None or now - learnt[0] >= self.window:
            return False
        sending = self._sending.get(network)
        return learnt[1] + (sending[1] if sending else 0) + unsent[1] > self.limit

    def take_unsent(self) -> dict[str, list]:
        """The hits to add to the shared windows, and the networks to read back without hits."""
        self._sending, self._unsent = self._unsent, {}
        watched = {
            net: [start, 0]
            for net, (start, count) in self._learnt.items()
            if 2 * count > self.limit and net not in self._sending
        }
        return {**self._sending, **watched}

    def learn(self, windows: dict[str, tuple[float, int]], now: float) -> None:
        """What the shared windows now hold (including what was sent); None drops what was sent."""
        self._sending = {}
        learnt = {k: v for k, v in self._learnt.items() if now - v[0] < self.window}
        learnt.update((net, window) for net, window in windows.items() if now - window[0] < self.window)
        self._learnt = learnt


# --- at the flush: views --------------------------------------------------------------------------


@dataclass(slots=True)
class Counted:
    """A classified batch: the rows to store (the table's columns, final reasons, duplicates left
    out), each valid view's visitor count after it, and the impression counters it touched."""

    rows: list[tuple]
    frequency: list[tuple[str, int, date, int]] = field(default_factory=list)  # visitor, campaign, day, views
    impressions: dict[tuple[int, str], int] = field(default_factory=dict)  # (campaign, ISO day) -> valid


Seed = Callable[[int, date], Awaitable[int]]  # valid impressions stored for a campaign on a day


class ViewCounter:
    """Classifies batches of buffered views in Redis (see the module's text).

    A buffered row is the impression's columns (server/ads/service.py: IMPRESSION_COLUMNS) followed
    by the view's network and the tag of the process that answered it; rows journaled before this
    design, with the columns only, are stored as they are."""

    def __init__(
        self, redis: Redis, *, columns: Sequence[str], seed: Seed, claim_ttl: int, window: float = WINDOW_SECONDS
    ) -> None:
        self.redis = redis
        self._views = redis.register_script(VIEWS)
        self._seed = seed
        self.claim_ttl = claim_ttl
        self.window_ms = int(window * 1000)
        self.width = len(columns)
        at = {name: i for i, name in enumerate(columns)}
        self._offer, self._time, self._campaign = at["offer"], at["viewed_at"], at["campaign"]
        self._visitor, self._reason = at["visitor_hash"], at["reason"]

    async def classify(self, rows: list[tuple], *, cap: int, rate: int) -> Counted:
        """Raises if Redis cannot answer (the caller decides: retry, or store the provisional reasons)."""
        width = self.width
        todo = [row for row in rows if len(row) == width + 2]
        if not todo:
            return Counted([row[:width] for row in rows])
        payload, keys = self._payload(todo, cap, rate)
        by_name = {impressions_key(c, d): (c, d) for c, d in keys}

        async def seed(name: str) -> tuple[int, int | None]:
            # A new day, a new campaign, or Redis restarted empty: start from what is stored.
            campaign_id, day = by_name[name]
            return await self._seed(campaign_id, date.fromisoformat(day)), DAY_COUNTER_TTL

        _, answers, seen, values = await batch_counts.count(self.redis, self._views, payload, seed, what="impression")
        counted = Counted([], impressions={k: int(v) for k, v in zip(keys, values, strict=True)})
        at_reason = self._reason
        days: dict[int, str] = {}
        results = iter(zip(answers, seen, strict=True))
        for row in rows:
            if len(row) != width + 2:
                counted.rows.append(row[:width])
                continue
            code, views = next(results)
            code = int(code)
            if code == _BOT:  # settled when answered (a bot, a data centre): the row's own reason
                counted.rows.append(row[:width])
                continue
            reason = _VIEW_REASONS.get(code)
            if reason is None:
                continue  # another process counted this offer's view: it is stored once, from there
            counted.rows.append((*row[:at_reason], reason.value, *row[at_reason + 1 : width]))
            if int(views):
                day = date.fromisoformat(batch_counts.utc_day(row[self._time], days))
                counted.frequency.append((row[self._visitor], row[self._campaign], day, int(views)))
        return counted

    def _payload(self, rows: list[tuple], cap: int, rate: int) -> tuple[bytes, list[tuple[int, str]]]:
        keys: dict[tuple[int, str], int] = {}
        nets: dict[str, int] = {}
        days: dict[int, str] = {}
        encoded = []
        for row in rows:
            network, tag = row[-2], row[-1]
            net = 0
            if network:
                net = nets.get(network) or nets.setdefault(network, len(nets) + 1)
            moment: datetime = row[self._time]
            day = batch_counts.utc_day(moment, days)
            campaign_id = row[self._campaign]
            counter = keys.get((campaign_id, day)) or keys.setdefault((campaign_id, day), len(keys) + 1)
            encoded.append(
                [
                    row[self._offer],
                    tag,
                    net,
                    int(moment.timestamp() * 1000),
                    1 if row[self._reason] in _SETTLED else 0,
                    f"{PREFIX}freq:{day}:{campaign_id}:{row[self._visitor]}",
                    counter,
                ]
            )
        payload = {
            "prefix": PREFIX,
            "nets_prefix": PREFIX + "vnet:",
            "cap": cap,
            "rate": rate,
            "window": self.window_ms,
            "claim_ttl": self.claim_ttl,
            "frequency_ttl": FREQUENCY_TTL,
            "keys": [impressions_key(c, d) for c, d in keys],
            "nets": list(nets),
            "rows": encoded,
        }
        return batch_counts.encode(payload), list(keys)


# --- at the click flush: offers' clicks -----------------------------------------------------------


class ClickClaims:
    """Claims an offer's click in Redis: None if the offer is good (its first click anywhere, and its
    view claimed, here or by any process), else "offer_replayed" or "not_viewed" (the click table's
    reason values). One call per click on an ad."""

    def __init__(self, redis: Redis, *, claim_ttl: int) -> None:
        self._clicks = redis.register_script(CLICKS)
        self.claim_ttl = claim_ttl

    async def claim(self, offer_id: str, *, viewed_here: bool) -> str | None:
        payload = {
            "prefix": PREFIX,
            "claim_ttl": self.claim_ttl,
            "rows": [[offer_id, process_tag(), 1 if viewed_here else 0]],
        }
        [answer] = await self._clicks(args=[batch_counts.encode(payload)])
        return {0: None, 2: "offer_replayed"}.get(int(answer), "not_viewed")


# --- every sync interval: decisions and pacing ----------------------------------------------------


class DecisionSync:
    """One call per sync interval: hands this process's decisions per network to the shared windows
    and reads the shared impression counters of the given campaigns and days."""

    def __init__(self, redis: Redis) -> None:
        self._sync = redis.register_script(SYNC)

    async def run(self, windows: NetworkWindows, counters: Iterable[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """The impression counts Redis holds (counters it does not hold are left out)."""
        counters = list(counters)
        unsent = windows.take_unsent()
        if not unsent and not counters:
            return {}
        nets = list(unsent.items())
        payload = {
            "prefix": PREFIX,
            "window": int(windows.window * 1000),
            "nets": [[net, int(first * 1000), hits] for net, (first, hits) in nets],
            "counters": [impressions_key(c, d) for c, d in counters],
        }
        try:
            shared, counts = await self._sync(args=[batch_counts.encode(payload)])
        except BaseException:
            windows.learn({}, time.time())  # these hits stay counted in this process only
            raise
        windows.learn(
            {net: (int(s) / 1000, int(n)) for (net, _), (s, n) in zip(nets, shared, strict=True)}, time.time()
        )
        return {key: int(n) for key, n in zip(counters, counts, strict=True) if int(n) >= 0}
