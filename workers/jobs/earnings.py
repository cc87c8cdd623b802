"""CPC earnings on a schedule."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from server.earnings import cpc


async def settle_click_earnings(ctx: dict[str, Any]) -> dict[str, Any]:
    """Price and charge closed hours of CPC clicks, retry those waiting for funds, release earnings
    past their hold. Idempotent (see server/earnings/cpc.py)."""
    return asdict(await cpc.run(now=ctx["clock"]()))
