"""CPC earnings on a schedule."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from server.conversions import cpc


async def settle_click_earnings(ctx: dict[str, Any]) -> dict[str, Any]:
    """Price and charge closed hours of CPC clicks, retry those waiting for funds, release earnings
    past their hold. Idempotent (see server/conversions/cpc.py)."""
    return asdict(await cpc.run(now=ctx["clock"]()))
