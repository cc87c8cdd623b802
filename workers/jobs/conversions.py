"""Conversion reconciliation on a schedule."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from server.conversions import approval


async def reconcile_conversions(ctx: dict[str, Any]) -> dict[str, Any]:
    """Approve conversions past their hold and release earnings. Idempotent (see the service)."""
    return asdict(await approval.run(now=ctx["clock"]()))
