"""One run of each cron job at a time across every `affnet worker`: a Redis lock per cron job.

What arq's `unique=True` gives (arq 0.28, worker.run_cron): the job id of a scheduled run is
`{name}:{scheduled time in ms}`, so the workers that all enqueue the same tick enqueue it once, and
the in-progress key (kept 60 s after a cron run) keeps a second worker from starting that same id.
What it does not give:
- run_at_startup: each worker's startup run is scheduled at its own start time, to the millisecond,
  so workers started together each run every cron job at once;
- a run longer than the interval: the next tick has another id, and another worker (or the same
  one) starts it while the first still runs;
- a worker that stalls or dies mid-run: its in-progress key expires after job_timeout + 10 s and
  nothing says the first run has stopped (a stalled process may wake up and carry on).

So every cron job runs under `affnet:cron:{name}`: SET NX PX with a random token, extended every
LEASE/3 while the run lasts, released by a compare-and-delete script (never another run's lock).
A run that finds the lock taken is skipped, not queued: the run holding it does the same work, and
the next tick comes anyway. After a run the key stays until MIN_GAP seconds after the run started,
so workers started together (a deploy) run each startup job once, not once per worker. A run whose
lock was lost (its renewal found another token: Redis lost the key, or the run stalled past the
lease) is cancelled, since another run may have started. Redis errors while renewing do not cancel
the run: the lock may still be there, and a run ends whichever way.

The lock is the first guard only. Every job is also idempotent at the database (conditional status
changes, SKIP LOCKED claims, ledger idempotency keys) and at Stripe (idempotency keys), because a
lock in Redis cannot be exact across a Redis failover or a process paused longer than the lease."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import time
from typing import Any

from arq.cron import CronJob

from server.core import process

log = logging.getLogger("affnet.worker")

LEASE = 60.0  # seconds a crashed run keeps its job locked
MIN_GAP = 10.0  # seconds after a run started before the same cron job runs again
PREFIX = "affnet:cron:"

# KEYS[1] the lock, ARGV[1] our token, ARGV[2] milliseconds.
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
# Release: ours only; kept ARGV[2] ms more when the run was short (MIN_GAP), else deleted.
_RELEASE = (
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if tonumber(ARGV[2]) > 0 then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
    "return redis.call('del', KEYS[1])"
)


class LockLost(Exception):
    """Another run may hold the cron job's lock now."""


def skipped(name: str, holder: str) -> str:
    return f"skipped: {name} is running on {holder} (or started there less than {MIN_GAP:.0f} s ago)"


async def run_locked(redis: Any, name: str, body: Any) -> Any:
    """Await `body()` holding the cron lock of `name`; the skip message when another run holds it."""
    key = PREFIX + name
    token = f"{process.name()}:{secrets.token_hex(8)}"
    if not await redis.set(key, token, nx=True, px=int(LEASE * 1000)):
        holder = await redis.get(key)
        holder = holder.decode() if isinstance(holder, bytes) else str(holder)
        message = skipped(name, holder.rsplit(":", 1)[0])
        log.info("cron %s", message)
        return message
    started = time.monotonic()
    task = asyncio.ensure_future(body())
    keeper = asyncio.ensure_future(_keep(redis, key, token, task))
    try:
        return await task
    except asyncio.CancelledError:
        if keeper.done() and isinstance(keeper.exception(), LockLost):
            raise LockLost(f"the lock of cron job {name} was lost; the run stopped") from None
        raise
    finally:
        keeper.cancel()
        if not task.done():  # we were cancelled (job timeout, shutdown): so is the run
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        left = MIN_GAP - (time.monotonic() - started)
        with contextlib.suppress(Exception):  # unreleased, it expires after LEASE
            await redis.eval(_RELEASE, 1, key, token, int(left * 1000) if left > 0.001 else 0)


async def _keep(redis: Any, key: str, token: str, run: asyncio.Future) -> None:
    while True:
        await asyncio.sleep(LEASE / 3)
        try:
            kept = await redis.eval(_EXTEND, 1, key, token, int(LEASE * 1000))
        except Exception as exc:  # noqa: BLE001 - Redis unreachable: the lock may well still be ours
            log.warning("could not renew the lock %s: %s", key, exc)
            continue
        if not kept:
            log.error("the lock %s was lost while its run went on; stopping the run", key)
            run.cancel()
            raise LockLost(key)


def locked(job: CronJob) -> CronJob:
    """The same cron job, its body run under its lock (the name, schedule and options unchanged)."""
    body = job.coroutine

    @functools.wraps(body)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return await run_locked(ctx["redis"], name, lambda: body(ctx, *args, **kwargs))

    name = job.name.removeprefix("cron:")  # arq names cron jobs `cron:{function}`

    return dataclasses.replace(job, coroutine=run)
