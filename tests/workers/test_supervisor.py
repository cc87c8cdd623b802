"""`affnet worker` rides out Redis outages: the supervised arq worker reconnects by itself and runs the jobs
queued after Redis came back; stopping it still stops it. On a real redis-server this test starts and stops."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from dev.services import find_redis_server, free_port, start_redis
from workers import supervisor

ran: list[str] = []


async def remember(ctx: dict, what: str) -> str:
    ran.append(what)
    return what


async def until(check, what: str, deadline: float = 45.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"not within {deadline:.0f} s: {what}")


async def test_the_worker_reconnects_after_redis_restarts_and_runs_new_jobs(tmp_path: Path, monkeypatch):
    if find_redis_server() is None:
        pytest.fail("redis-server is required (scripts/test-prereqs.sh installs it)")
    monkeypatch.setattr(supervisor, "FIRST_DELAY", 0.2)  # keep the test short; the loop is the same
    port = free_port()
    redis = start_redis(tmp_path / "redis", port=port)
    settings = RedisSettings(host="127.0.0.1", port=port, conn_retries=1, conn_retry_delay=0)
    worker_settings = {
        "functions": [remember],
        "redis_settings": settings,
        "poll_delay": 0.05,
        "health_check_interval": 1,
    }
    stop = asyncio.Event()
    ran.clear()
    running = asyncio.create_task(supervisor.supervise(worker_settings, stop))
    try:
        pool = await create_pool(settings)
        await pool.enqueue_job("remember", "before")
        await until(lambda: ran == ["before"], "the job queued before the outage ran")
        await pool.aclose()

        redis.stop()  # the outage: arq alone would end here, for good
        await asyncio.sleep(2)
        assert not running.done(), "the supervisor must outlive the outage"

        redis = start_redis(tmp_path / "redis", port=port)
        pool = await create_pool(settings)
        await pool.enqueue_job("remember", "after")
        await until(lambda: ran == ["before", "after"], "the job queued after the outage ran")
        await until(lambda: False if running.done() else True, "still running")
        assert await pool.exists("arq:queue:health-check")  # /healthz sees the worker again
        await pool.aclose()
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)  # stopping still stops it
        redis.stop()
