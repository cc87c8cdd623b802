"""Two arq workers on one Redis never run the same cron job at once: not the startup runs of workers started
together (arq gives each its own job id), not a run that outlasts its interval. arq's `unique=True` alone
lets both happen, as the first test shows; the lock (workers/cron_lock.py) stops them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from arq import cron
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.worker import Worker
from redis.asyncio import Redis

from dev.services import Service
from server.core import process
from workers import cron_lock

runs: list[tuple[str, float, float]] = []  # (worker, started, ended) of each run of the job's body
running = [0, 0]  # now, most at once


async def tick(ctx: dict[str, Any]) -> str:
    """The cron job's body: a second of work, noting who ran it and how many ran at once."""
    running[0] += 1
    running[1] = max(running[1], running[0])
    started = time.monotonic()
    try:
        await asyncio.sleep(ctx["work"])
    finally:
        running[0] -= 1
    runs.append((ctx["name"], started, time.monotonic()))
    return "ran"


@pytest.fixture
async def redis(redis_service: Service) -> Any:
    client = Redis.from_url(redis_service.url)
    await client.flushdb()
    runs.clear()
    running[:] = [0, 0]
    yield redis_service
    await client.flushdb()
    await client.aclose()


def _worker(redis_service: Service, name: str, job: Callable[[], CronJob], work: float) -> Worker:
    """An arq worker of its own (as in another process: its own CronJob, which holds the next run time)."""
    return Worker(
        functions=[],
        cron_jobs=[job()],
        redis_settings=RedisSettings.from_dsn(redis_service.url),
        ctx={"name": name, "work": work},
        poll_delay=0.05,
        handle_signals=False,
    )


async def _run(workers: list[Worker], seconds: float) -> None:
    """Run the workers for `seconds`, the second started 0.2 s after the first (as processes are: in one
    millisecond both would enqueue the same startup job id, and arq would run it once)."""
    tasks = []
    for w in workers:
        tasks.append(asyncio.create_task(w.main()))
        await asyncio.sleep(0.2)
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for w in workers:
        await w.close()


async def test_without_the_lock_two_workers_run_the_startup_job_at_once(redis):
    """What the lock is for: arq's unique cron ids do not cover the startup runs (each at its own time)."""

    def job() -> CronJob:
        return cron(tick, hour={0}, minute={0}, second={0}, run_at_startup=True, unique=True)

    await _run([_worker(redis, "a", job, 1.0), _worker(redis, "b", job, 1.0)], 2.5)
    assert len(runs) == 2 and running[1] == 2


async def test_two_workers_started_together_run_the_startup_job_once(redis):
    def job() -> CronJob:
        return cron_lock.locked(cron(tick, hour={0}, minute={0}, second={0}, run_at_startup=True, unique=True))

    await _run([_worker(redis, "a", job, 1.0), _worker(redis, "b", job, 1.0)], 2.5)
    assert len(runs) == 1 and running[1] == 1


async def test_a_run_longer_than_the_interval_is_never_joined_by_the_next_tick(redis, monkeypatch):
    """A job due every second whose body takes 1.5 s, on two workers for 6 s: one run at a time, and the
    ticks that found it running were skipped, not queued."""
    monkeypatch.setattr(cron_lock, "MIN_GAP", 0.0)

    def job() -> CronJob:
        return cron_lock.locked(cron(tick, second=set(range(60)), unique=True))

    await _run([_worker(redis, "a", job, 1.5), _worker(redis, "b", job, 1.5)], 6.0)
    assert running[1] == 1
    assert 2 <= len(runs) <= 4
    ordered = sorted(runs, key=lambda r: r[1])
    assert all(later[1] >= earlier[2] for earlier, later in zip(ordered, ordered[1:], strict=False))


async def test_a_run_whose_lock_was_lost_stops(redis, monkeypatch):
    """The key expired under a run (a stall past the lease) and another took it: the first run stops
    instead of going on beside the second."""
    monkeypatch.setattr(cron_lock, "LEASE", 0.6)  # renewed every 0.2 s
    client = Redis.from_url(redis.url)
    try:
        body = asyncio.ensure_future(cron_lock.run_locked(client, "lost", lambda: tick({"name": "a", "work": 3.0})))
        await asyncio.sleep(0.1)
        assert await cron_lock.run_locked(client, "lost", lambda: tick({"name": "b", "work": 0})) == (
            cron_lock.skipped("lost", process.name())
        )
        await client.set(cron_lock.PREFIX + "lost", "someone-else")
        with pytest.raises(cron_lock.LockLost):
            await asyncio.wait_for(body, 2)
        assert runs == [] and running[0] == 0  # the first run was cancelled, the second skipped
        assert await client.get(cron_lock.PREFIX + "lost") == b"someone-else"  # not released by the loser
    finally:
        await client.aclose()
