"""Payout periods on a schedule: thin calls into server/payouts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from arq import Retry

from server.billing import stripe_api
from server.payouts import execute
from server.payouts import service as payouts

log = logging.getLogger("affnet.payouts")


async def prepare_payouts(ctx: dict[str, Any]) -> dict[str, Any]:
    """Prepare the batches of the period whose cut-off passed last. Idempotent (one batch per period
    and currency), so running it every quarter of an hour prepares each period once."""
    return asdict(await payouts.prepare_due(ctx["clock"]()))


async def execute_payout_batch(ctx: dict[str, Any], batch_id: int) -> str:
    """Pay an approved batch (enqueued after approval, job id per batch). Resumable and idempotent:
    lines Stripe could not be reached for stay submitting and are retried with the same key."""
    try:
        async with _stripe(ctx) as client:
            return await execute.execute(batch_id, client)
    except execute.Transient as exc:
        raise Retry(defer=min(30 * 2 ** (ctx.get("job_try", 1) - 1), 1800)) from exc


async def sweep_payout_batches(ctx: dict[str, Any]) -> dict[int, str]:
    """Approved batches whose job was lost, and batches a crash left executing: paid now."""
    outcome: dict[int, str] = {}
    async with _stripe(ctx) as client:
        for batch_id in await execute.resumable():
            try:
                outcome[batch_id] = await execute.execute(batch_id, client)
            except Exception as exc:  # one batch's trouble must not stop the others
                log.warning("payout batch %s not finished: %s", batch_id, exc)
                outcome[batch_id] = f"not finished: {exc}"
    return outcome


@asynccontextmanager
async def _stripe(ctx: dict[str, Any]) -> AsyncIterator[Any]:
    http = stripe_api.HTTPXClient()
    try:
        yield stripe_api.client_for(ctx["settings"], http)
    finally:
        await http.close_async()
