"""Handing work to the arq worker: the one enqueue helper every route uses after its transaction commits.

A job is only ever a shortcut. The work it names is already recorded in the database (a Stripe event row,
an approved payout batch), and a worker sweep finds anything whose job never ran. So a Redis outage must
never fail the request that wanted the job: `enqueue` logs, keeps the job in a small in-process list, and
retries it every few seconds until Redis answers again, so work recorded during an outage starts within
seconds of Redis coming back instead of waiting for the next sweep. If this process dies first, the sweep
still does the work. Job ids make every retry harmless: arq keeps one job per id.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import Redis

log = logging.getLogger("affnet.jobs")

RETRY_EVERY = 2.0  # seconds between attempts to hand waiting jobs over once Redis failed
MAX_WAITING = 1000  # beyond this the sweeps alone catch up (bounded memory during a long outage)


@dataclass(frozen=True)
class _Waiting:
    redis: Redis
    function: str
    args: tuple[Any, ...]
    job_id: str


_waiting: dict[str, _Waiting] = {}
_retrier: asyncio.Task | None = None


async def _send(redis: Redis, function: str, args: tuple[Any, ...], job_id: str) -> None:
    # An ArqRedis over the app's own connection pool: no second pool, and arq's job format.
    pool = ArqRedis(pool_or_conn=redis.connection_pool)
    await pool.enqueue_job(function, *args, _job_id=job_id)


async def enqueue(redis: Redis, function: str, *args: Any, job_id: str) -> bool:
    """Queue `function(*args)` under `job_id` (arq runs one job per id). Call it only after the transaction
    that recorded the work has committed. Never raises: False means Redis did not take it now, it will be
    retried from this process, and the worker's sweep covers it in any case."""
    try:
        await _send(redis, function, args, job_id)
        return True
    except Exception as exc:  # noqa: BLE001 - any failure here is Redis being unavailable to us
        log.warning("could not enqueue %s %s now (retrying; the sweep covers it): %s", function, job_id, exc)
        _wait(_Waiting(redis, function, args, job_id))
        return False


def _wait(job: _Waiting) -> None:
    global _retrier
    if len(_waiting) < MAX_WAITING:
        _waiting[job.job_id] = job
    loop = asyncio.get_running_loop()
    if _retrier is None or _retrier.done() or _retrier.get_loop() is not loop:
        _retrier = loop.create_task(_retry_waiting())


async def _retry_waiting() -> None:
    """Hand waiting jobs over, oldest first, until none is left (then this task ends)."""
    while _waiting:
        await asyncio.sleep(RETRY_EVERY)
        for job_id, job in list(_waiting.items()):
            try:
                await _send(job.redis, job.function, job.args, job.job_id)
            except Exception:  # noqa: BLE001 - still down: try again later
                break
            _waiting.pop(job_id, None)
            log.info("enqueued %s %s after Redis came back", job.function, job_id)


def waiting() -> list[str]:
    """Job ids waiting for Redis in this process (for tests and the health page)."""
    return list(_waiting)


async def stop() -> None:
    """Forget waiting jobs (the sweeps will do them) and end the retry task: on shutdown."""
    global _retrier
    _waiting.clear()
    if _retrier is not None:
        _retrier.cancel()
        await asyncio.gather(_retrier, return_exceptions=True)
        _retrier = None
