"""Counting a flushed batch in Redis in one Lua call: what the click flush (server/tracking/counting.py)
and the view flush (server/ads/counting.py) share.

A domain's script is `SCRIPT_HEAD` followed by its own body. The head decodes the JSON payload
(ARGV[1]: `keys`, the counters the batch touches; `nets` and `nets_prefix`, the networks it counts;
`window`, a network window's length in ms), reads every counter once (or returns {0, missing
names}: `count` seeds them from the database with SET NX, so processes seeding at once agree, and
runs the script again), reads every network's window once, and defines:

- `hit(net, ms)`: one more request from network `net` (an index into `nets`) at `ms`; the
  network's requests in its window, this one included (a window starts at a network's first hit);
- `value[i]`, `dirty[i] = true`: a counter's value, and that it changed;
- `save()`: writes back what changed, once per key; returns the counters' values in `keys` order.

The scripts touch keys they compute rather than declare: one Redis (or one primary), not Redis
Cluster."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import date, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

SCRIPT_HEAD = """
local p = cjson.decode(ARGV[1])
local value, dirty, missing = {}, {}, {}
for i, key in ipairs(p.keys) do
  local v = redis.call('GET', key)
  if v then value[i] = tonumber(v) else missing[#missing + 1] = key end
end
if #missing > 0 then return {0, missing} end
local win_start, win_count, win_touched, win_restarted = {}, {}, {}, {}
for i, net in ipairs(p.nets) do
  local w = redis.call('HMGET', p.nets_prefix .. net, 's', 'n')
  win_start[i], win_count[i] = tonumber(w[1]), tonumber(w[2]) or 0
end
local function hit(net, ms)
  if win_start[net] == nil or ms - win_start[net] >= p.window then
    win_start[net], win_count[net], win_restarted[net] = ms, 0, true
  end
  win_count[net], win_touched[net] = win_count[net] + 1, true
  return win_count[net]
end
local function save()
  for i, key in ipairs(p.keys) do
    if dirty[i] then redis.call('SET', key, value[i], 'KEEPTTL') end
  end
  for i, net in ipairs(p.nets) do
    local key = p.nets_prefix .. net
    if win_restarted[i] then
      redis.call('HSET', key, 's', win_start[i], 'n', win_count[i])
      redis.call('PEXPIRE', key, 2 * p.window) -- outlives its window, and goes with it
    elseif win_touched[i] then
      redis.call('HSET', key, 'n', win_count[i])
    end
  end
  local values = {}
  for i = 1, #p.keys do values[i] = value[i] end
  return values
end
"""

# (the counter's value as stored, its expiry in seconds or None) for a missing counter's name
Seed = Callable[[str], Awaitable[tuple[int, int | None]]]


# Rows counted per Redis call at a flush, at most. Building a call's payload and reading its answers
# hold the event loop (about 4 µs a row); between two calls the loop answers the requests that came
# meanwhile, where one call for a batch of 5,000 would keep them waiting 20 ms. The flushes still
# store their batch in one database write.
ROWS_PER_CALL = 500


def per_call(rows: list[tuple]) -> Iterator[list[tuple]]:
    """A flushed batch's rows, ROWS_PER_CALL at a time, in order."""
    for start in range(0, len(rows), ROWS_PER_CALL):
        yield rows[start : start + ROWS_PER_CALL]


def encode(payload: dict[str, Any]) -> bytes:
    """The script's ARGV[1]. msgspec: a thirtieth of json.dumps's time on a batch of 5,000 rows.
    (cjson decodes an empty JSON array as an object; ipairs walks neither, so it is harmless.)"""
    return msgspec.json.encode(payload)


async def count(redis: Redis, script: AsyncScript, payload: bytes, seed: Seed, *, what: str) -> list:
    """Run a counting script on a batch; seed the counters it finds missing and run it again.
    Returns the script's answer (its first element is 1). Raises if Redis cannot answer: the
    caller's buffer keeps the rows and tries again."""
    for _ in range(3):
        answer = await script(args=[payload])
        if answer[0] == 1:
            return answer
        for name in answer[1]:
            name = name.decode() if isinstance(name, bytes) else name
            stored, ttl = await seed(name)
            await redis.set(name, stored, nx=True, ex=ttl)
    raise RuntimeError(f"{what} counters were not seeded after three attempts")


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def utc_day(moment: datetime, days: dict[int, str]) -> str:
    """The ISO UTC date of an aware datetime, through a cache of the days met (a flush meets one or two)."""
    number = int(moment.timestamp() // 86400)
    day = days.get(number)
    if day is None:
        day = days[number] = date.fromordinal(_EPOCH_ORDINAL + number).isoformat()
    return day
