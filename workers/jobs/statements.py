"""Publishers' payout statements and self-billed invoices (server/payouts/statements.py): issued for
paid lines that have none yet, every minute by cron, and once more as soon as a batch is paid (the
batch's job queues `issue_batch_statements`). Issuing is idempotent at the database (one document per
source key, numbers taken in the issuing transaction), so two runs meeting issue each document once;
both run under the same cron lock, so they do not meet in the first place."""

from __future__ import annotations

import logging
import time
from typing import Any

from server.payouts import statements
from workers import cron_lock

log = logging.getLogger("affnet.payouts")

NAME = "issue_statements"
PAGE = 500  # lines per pass
BUDGET = 40.0  # seconds of passes per run (the cron lock's lease is renewed meanwhile): a 10,000-line batch
# takes a few runs, each leaving room for the next minute's


async def issue_statements(ctx: dict[str, Any]) -> int:
    """The paid lines' documents still to issue, oldest first: how many lines got theirs."""
    return await drain()


async def drain(budget: float = BUDGET) -> int:
    """Pass after pass of `statements.issue_due` while whole pages are issued and time is left."""
    total = 0
    started = time.monotonic()
    while True:
        issued = await statements.issue_due(PAGE)
        total += issued
        if issued < PAGE or time.monotonic() - started > budget:
            return total


async def issue_batch_statements(ctx: dict[str, Any], batch_id: int) -> Any:
    """Queued when a batch is paid: the same run as the cron's, under its lock (skipped while a run
    holds it: that run, or the next minute's, issues them)."""
    return await cron_lock.run_locked(ctx["redis"], NAME, drain)


async def queue_after_batch(redis: Any, batch_id: int) -> None:
    """Queue `issue_batch_statements` for a paid batch (once per batch: its job id). Never fails the
    payment's job: the cron issues them anyway."""
    try:
        await redis.enqueue_job("issue_batch_statements", batch_id, _job_id=f"statements:payout-batch:{batch_id}")
    except Exception as exc:  # noqa: BLE001 - Redis trouble: the next minute's run issues them
        log.warning("payout batch %s: its statements could not be queued: %s", batch_id, exc)
