"""CPM earnings on a schedule."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from server.earnings import cpm


async def settle_impression_earnings(ctx: dict[str, Any]) -> dict[str, Any]:
    """Price and charge closed hours of valid impressions of CPM goals, retry those waiting for
    funds, release earnings past their hold. Idempotent (see server/earnings/cpm.py)."""
    return asdict(await cpm.run(now=ctx["clock"]()))
