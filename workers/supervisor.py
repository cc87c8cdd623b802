"""Run the arq worker so that a Redis outage pauses it instead of ending it.

arq's worker exits on the first Redis error in its loop (its connection retries cover only the first
connect, and redis-py's retry helpers give up after their count: python-arq/arq#386, #435, #498). A worker
that exits stays dead until someone restarts it, and meanwhile a paid top-up waits. So `affnet worker`
runs arq under this loop: when the worker stops on a Redis connection error, its running jobs get a short
grace to finish (their database work commits; a job whose result could not be stored runs again later,
which every job tolerates), the worker is closed, and a fresh one connects after a backoff (1 s doubling
to MAX_DELAY, reset after a worker that ran a minute). Cron schedules live on the CronJob objects and
carry over, so missed runs are queued as soon as Redis answers. Any other error still ends the process
(with its traceback), for the process supervisor to see and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from arq.worker import Worker, create_worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("affnet.worker")

FIRST_DELAY = 1.0
MAX_DELAY = 20.0
STEADY_AFTER = 60.0  # a worker that ran this long had a working Redis: the next outage starts at FIRST_DELAY
JOB_GRACE = 10.0  # seconds running jobs may take to finish after Redis was lost

REDIS_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


def is_redis_outage(exc: BaseException) -> bool:
    return isinstance(exc, REDIS_ERRORS)


async def _close(worker: Worker, grace: float) -> None:
    """arq's Worker.close, tolerant of a Redis that is gone: jobs finish or are cancelled, on_shutdown
    runs (the database engine is released), the pool is dropped."""
    running = [t for t in worker.tasks.values() if not t.done()]
    if running and grace > 0:
        await asyncio.wait(running, timeout=grace)
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    if worker.on_shutdown is not None:
        try:
            await worker.on_shutdown(worker.ctx)
        except Exception:  # noqa: BLE001 - closing anyway
            log.exception("worker shutdown hook failed")
    pool = worker._pool  # noqa: SLF001 - arq keeps it private; None if the worker never connected
    if pool is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.delete(worker.health_check_key), 2)
        with contextlib.suppress(Exception):
            await pool.aclose(close_connection_pool=True)
        worker._pool = None  # noqa: SLF001


async def _run_once(worker: Worker, stop: asyncio.Event) -> BaseException | None:
    """Run one worker until it fails or `stop` is set; its error, or None when it ended normally (stop, burst)."""
    main = asyncio.ensure_future(worker.main())
    worker.main_task = main
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not main.done():  # asked to stop: cancel jobs as arq's own signal handler does
        main.cancel()
        await asyncio.gather(main, return_exceptions=True)
        await _close(worker, grace=0)
        return None
    error = None if main.cancelled() else main.exception()
    await _close(worker, grace=JOB_GRACE if error is not None else 0)
    return error


async def supervise(settings_cls: Any, stop: asyncio.Event | None = None, **overrides: Any) -> None:
    """Run arq workers one after another until `stop` is set (or a burst worker finishes), reconnecting
    after Redis outages with backoff; other errors are raised."""
    stop = stop or asyncio.Event()
    delay = FIRST_DELAY
    while not stop.is_set():
        worker = create_worker(settings_cls, handle_signals=False, **overrides)
        began = time.monotonic()
        error = await _run_once(worker, stop)
        if error is None:
            return
        if not is_redis_outage(error):
            raise error
        if time.monotonic() - began > STEADY_AFTER:
            delay = FIRST_DELAY
        log.warning("worker lost Redis (%s: %s); reconnecting in %.0f s", type(error).__name__, error, delay)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, MAX_DELAY)


def run(settings_cls: Any) -> None:
    """`affnet worker`: supervise arq workers until SIGINT or SIGTERM."""

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervise(settings_cls, stop)

    asyncio.run(main())
