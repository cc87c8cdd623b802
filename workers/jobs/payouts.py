"""Payout periods on a schedule: thin calls into server/payouts. A large batch is paid by every worker
process at once: its executor invites helpers (workers/spread.py), each paying the lines it claims."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from arq import Retry
from redis.exceptions import LockError

from server.billing import stripe_api
from server.payouts import execute, reconcile
from server.payouts import service as payouts
from workers import spread
from workers.jobs.statements import queue_after_batch

log = logging.getLogger("affnet.payouts")


async def prepare_payouts(ctx: dict[str, Any]) -> dict[str, Any]:
    """Prepare the batches of the period whose cut-off passed last. Idempotent (one batch per period
    and currency), so running it every quarter of an hour prepares each period once."""
    return asdict(await payouts.prepare_due(ctx["clock"]()))


LOCK_SECONDS = 120  # a batch's lock outlives a dead worker by at most this; renewed after every chunk
BUSY = "busy: another worker is paying this batch"
HELP_FROM = 4 * execute.CHUNK  # open lines from which other workers are invited to help pay a batch


async def execute_payout_batch(ctx: dict[str, Any], batch_id: int) -> str:
    """Pay an approved batch (enqueued after approval, job id per batch). Resumable and idempotent:
    lines Stripe could not be reached for stay submitting and are retried with the same key."""
    try:
        async with _stripe(ctx) as client, batch_lock(ctx["redis"], batch_id) as heartbeat:
            if heartbeat is None:
                return BUSY
            status = await _execute(ctx, batch_id, client, heartbeat)
            if status == "done":
                await _reconcile(batch_id, client)
                await queue_after_batch(ctx["redis"], batch_id)  # its statements, without waiting a minute
            return status
    except execute.Transient as exc:
        raise Retry(defer=min(30 * 2 ** (ctx.get("job_try", 1) - 1), 1800)) from exc


async def sweep_payout_batches(ctx: dict[str, Any]) -> dict[int, str]:
    """Approved batches whose job was lost, and batches a crash left executing: paid now."""
    outcome: dict[int, str] = {}
    async with _stripe(ctx) as client:
        for batch_id in await execute.resumable():
            try:
                async with batch_lock(ctx["redis"], batch_id) as heartbeat:
                    outcome[batch_id] = BUSY if heartbeat is None else await _execute(ctx, batch_id, client, heartbeat)
            except Exception as exc:  # one batch's trouble must not stop the others
                log.warning("payout batch %s not finished: %s", batch_id, exc)
                outcome[batch_id] = f"not finished: {exc}"
    return outcome


def _work(batch_id: int) -> str:
    return f"payout-batch:{batch_id}"


async def _execute(ctx: dict[str, Any], batch_id: int, client: Any, heartbeat: execute.Heartbeat) -> str:
    """Pay the batch as its executor; once it is executing, a large batch invites other workers to help."""

    async def invite() -> None:
        if await execute.open_lines(batch_id) >= HELP_FROM:
            await spread.invite(ctx["redis"], "join_payout_batch", _work(batch_id), batch_id)

    with spread.doing(_work(batch_id)):
        return await execute.execute(batch_id, client, heartbeat=heartbeat, on_start=invite)


async def join_payout_batch(ctx: dict[str, Any], batch_id: int, link: int = 1, hop: int = 0) -> str:
    """Help pay an executing batch (invited by its executor): the lines this worker claims, once each."""

    async def pay() -> str:
        async with _stripe(ctx) as client:
            return f"paid {await execute.help(batch_id, client)} line(s)"

    return await spread.join(
        ctx,
        "join_payout_batch",
        _work(batch_id),
        (batch_id,),
        link,
        hop,
        left=lambda: execute.claimable(batch_id),
        do=pay,
    )


async def _reconcile(batch_id: int, client: Any) -> None:
    """Compare the paid batch with Stripe's side at once; finance sees the result on the batch page."""
    try:
        result = await reconcile.reconcile_batch(batch_id, client)
    except Exception as exc:  # the payments stand; finance can run the check again from the page
        log.warning("payout batch %s paid, but could not be reconciled with Stripe: %s", batch_id, exc)
        return
    if not result.ok:
        log.error("payout batch %s differs from Stripe: %s", batch_id, "; ".join(result.problems[:20]))


@asynccontextmanager
async def batch_lock(redis: Any, batch_id: int) -> AsyncIterator[execute.Heartbeat | None]:
    """One executor per batch at a time (the approval's job, a retry's job and the sweep may meet):
    yields a heartbeat that renews the lock, or None when another worker holds it. The ledger and the
    lines' conditional updates keep a batch paid once even without it; the lock keeps two workers
    from sending the same keys side by side. A lost lock (renewal fails) stops this executor."""
    lock = redis.lock(f"affnet:payout-batch:{batch_id}:executing", timeout=LOCK_SECONDS, blocking=False)
    if not await lock.acquire():
        yield None
        return
    try:
        yield lock.reacquire
    finally:
        try:
            await lock.release()
        except LockError:
            log.warning("the lock on payout batch %s had expired before it was released", batch_id)


@asynccontextmanager
async def _stripe(ctx: dict[str, Any]) -> AsyncIterator[Any]:
    http = stripe_api.HTTPXClient()
    try:
        yield stripe_api.client_for(ctx["settings"], http)
    finally:
        await http.close_async()
