"""The arq worker, on a real Redis, purges expired sessions on its schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

from server.accounts import service as accounts
from server.accounts.tables import Session
from tests.factories import make_publisher
from workers import settings as worker_settings


async def _sessions(settings, count: int) -> list[str]:
    user_id, _ = await make_publisher(settings)
    return [await accounts.create_session(user_id, settings) for _ in range(count)]


async def test_worker_purges_expired_sessions_and_keeps_live_ones(clean, settings):
    await _sessions(settings, 3)
    expired_ids = [r["id"] for r in await Session.select(Session.id).limit(2)]
    await Session.update({Session.expires_at: datetime.now(UTC) - timedelta(minutes=1)}).where(
        Session.id.is_in(expired_ids)
    )

    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    pool = await create_pool(redis_settings)
    job = await pool.enqueue_job("purge_expired_sessions")
    worker = Worker(
        functions=worker_settings.FUNCTIONS,
        redis_settings=redis_settings,
        burst=True,
        ctx={"clock": lambda: datetime.now(UTC)},
        poll_delay=0.05,
        handle_signals=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    assert await job.result(timeout=5) == 2
    remaining = await Session.select(Session.id)
    assert len(remaining) == 1 and remaining[0]["id"] not in expired_ids

    # Running it again changes nothing.
    assert await accounts.purge_expired_sessions() == 0
    await pool.aclose()


def test_purge_is_scheduled_as_a_cron_job():
    names = {job.name for job in worker_settings.WorkerSettings.cron_jobs}
    assert "cron:purge_expired_sessions" in names
    job = next(j for j in worker_settings.WorkerSettings.cron_jobs if j.name == "cron:purge_expired_sessions")
    assert job.run_at_startup and job.minute == set(range(0, 60, 10))
