"""Stripe events and auto-pause on the worker: thin calls into server/billing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from arq import Retry

from server.billing import funding_events, stripe_api
from server.billing import service as billing
from server.billing.stripe_api import Gateway
from server.stripe_events import service as stripe_events


@asynccontextmanager
async def _gateway(ctx: dict[str, Any]) -> AsyncIterator[Gateway]:
    if "stripe_gateway" in ctx:  # injected (tests)
        yield ctx["stripe_gateway"]
        return
    async with stripe_api.gateway(ctx["settings"]) as gateway:
        yield gateway


async def process_stripe_event(ctx: dict[str, Any], event_id: str) -> str:
    """Apply one recorded Stripe event (enqueued by the webhook with job id = event id). Idempotent.
    Stripe being unreachable or not done yet: retried later by arq, and by the sweep after that."""
    try:
        async with _gateway(ctx) as gateway:
            return await stripe_events.process(event_id, gateway)
    except funding_events.NotYet as exc:
        raise Retry(defer=5 * ctx.get("job_try", 1)) from exc
    except Exception as exc:
        if stripe_api.is_transient(exc):
            raise Retry(defer=10 * ctx.get("job_try", 1)) from exc
        raise


async def sweep_stripe_events(ctx: dict[str, Any]) -> dict[str, int]:
    """Events recorded but not processed (an enqueue lost, a job that gave up): processed now."""
    async with _gateway(ctx) as gateway:
        return await stripe_events.sweep(gateway, now=ctx["clock"]() if "clock" in ctx else None)


async def enforce_auto_pause(ctx: dict[str, Any]) -> list[int]:
    """Pause the active campaigns of advertisers whose balance is below their auto-pause threshold."""
    return await billing.enforce_all_thresholds()
