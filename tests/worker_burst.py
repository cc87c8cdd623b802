"""Run the real arq worker, with affnet's job functions, on the tests' real Redis until its queue is empty."""

from __future__ import annotations

from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

from server.core.settings import Settings
from workers import settings as worker_settings


async def run_burst(settings: Settings, ctx: dict[str, Any], *enqueue: str) -> list[Any]:
    """Enqueue the named jobs, then let a burst worker run everything queued; the enqueued jobs' results."""
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    pool = await create_pool(redis_settings)
    try:
        jobs = [await pool.enqueue_job(name) for name in enqueue]
        worker = Worker(
            functions=worker_settings.FUNCTIONS,
            redis_settings=redis_settings,
            burst=True,
            ctx=ctx,
            poll_delay=0.05,
            handle_signals=False,
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        return [await job.result(timeout=5) for job in jobs]
    finally:
        await pool.aclose()
