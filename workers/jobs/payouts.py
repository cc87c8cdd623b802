"""Payout periods on a schedule: thin calls into server/payouts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from server.payouts import service as payouts


async def prepare_payouts(ctx: dict[str, Any]) -> dict[str, Any]:
    """Prepare the batches of the period whose cut-off passed last. Idempotent (one batch per period
    and currency), so running it every quarter of an hour prepares each period once."""
    return asdict(await payouts.prepare_due(ctx["clock"]()))
