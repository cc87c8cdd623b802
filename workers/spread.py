"""Spreading one large piece of work (a payout batch, a reconcile) over every worker process.

The job that owns the work (the batch's executor, the reconcile cron job) invites help: a "join" job
on the shared queue. arq gives a queued job to whichever worker polls first, often the one already
busy with the work, where a second executor adds nothing (one process already keeps CONCURRENCY
transfers in flight) but contention. So a join job that lands in a process already on the work
hands itself on: it is queued again, HOP_DELAY later, for another process to take. A join job that
lands in a fresh process joins, and first invites the next process in turn. The chain ends when
the work has nothing left to claim, or after MAX_HOPS hand-ons (a single worker: nobody else comes).

Joining is only a speed-up. What keeps two processes from doing the same row twice is in the
database: claims by conditional UPDATE (FOR UPDATE SKIP LOCKED on PostgreSQL), ledger idempotency
keys, Stripe idempotency keys. Losing a join job (Redis, a crash) only means fewer helpers."""

from __future__ import annotations

import collections
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

log = logging.getLogger("affnet.worker")

HOP_DELAY = 0.5  # seconds before a handed-on join job may be taken (arq's poll delay is 0.5 s)
MAX_HOPS = 120  # a minute of hand-ons without finding a free process: nobody else is there
HANDED_ON = "handed on: this worker is on it already"
NOTHING_LEFT = "nothing left to join"

_here: collections.Counter[str] = collections.Counter()  # work this process is doing, by key


def here(work: str) -> bool:
    return _here[work] > 0


@contextlib.contextmanager
def doing(work: str) -> Iterator[None]:
    """Mark `work` as being done in this process while the block runs."""
    _here[work] += 1
    try:
        yield
    finally:
        _here[work] -= 1
        if not _here[work]:
            del _here[work]


async def invite(redis: Any, job: str, work: str, *args: Any, link: int = 1, hop: int = 0) -> None:
    """Queue the join job `job(*args, link, hop)` for `work`. Its job id names the work, link and hop, and
    ends with a random part: arq refuses an id whose result it still keeps (an hour), and the next
    reconcile invites help for the same work."""
    job_id = f"{work}:join:{link}:{hop}:{secrets.token_hex(3)}"
    with contextlib.suppress(Exception):  # no help this time; the work goes on
        await redis.enqueue_job(job, *args, link, hop, _job_id=job_id, _defer_by=HOP_DELAY if hop else None)


async def join(
    ctx: dict[str, Any],
    job: str,
    work: str,
    args: tuple[Any, ...],
    link: int,
    hop: int,
    *,
    left: Callable[[], Awaitable[bool]],
    do: Callable[[], Awaitable[Any]],
) -> Any:
    """The body of a join job: hand it on when this process is on `work` already; else invite the next
    process and do the work's share (`do`) while `left()` says there is something to claim."""
    redis = ctx["redis"]
    if not await left():
        return NOTHING_LEFT
    if here(work):
        if hop < MAX_HOPS:
            await invite(redis, job, work, *args, link=link, hop=hop + 1)
        return HANDED_ON
    await invite(redis, job, work, *args, link=link + 1, hop=0)
    log.info("joining %s (helper %d)", work, link)
    with doing(work):
        return await do()
