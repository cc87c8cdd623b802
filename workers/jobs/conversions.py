"""Conversion reconciliation on a schedule. A large reconcile on PostgreSQL is shared by every worker
process: the cron run invites helpers (workers/spread.py); approval locks its batches with SKIP LOCKED,
so each conversion is approved by one of them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from server.conversions import approval
from server.core import db
from workers import spread

HELP_FROM = 2  # batches of due conversions (approval.BATCH) from which other workers are invited
WORK = "reconcile-conversions"


async def reconcile_conversions(ctx: dict[str, Any]) -> dict[str, Any]:
    """Approve conversions past their hold and release earnings. Idempotent (see the service)."""
    now = ctx["clock"]()
    with spread.doing(WORK):
        # SQLite has one writer: a helper would only wait for this run.
        if not db.is_sqlite() and await approval.due(now, at_least=HELP_FROM * approval.batch_size()):
            await spread.invite(ctx["redis"], "join_reconcile_conversions", WORK)
        return asdict(await approval.run(now=now))


async def join_reconcile_conversions(ctx: dict[str, Any], link: int = 1, hop: int = 0) -> dict[str, Any] | str:
    """Help a running reconcile (invited by it): the batches this worker locks, each approved once."""
    now = ctx["clock"]()

    async def reconcile() -> dict[str, Any]:
        return asdict(await approval.run(now=now))

    return await spread.join(
        ctx, "join_reconcile_conversions", WORK, (), link, hop, left=lambda: approval.due(now), do=reconcile
    )
