"""The reports' rollups on a schedule."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from server.reports import rollup


async def roll_up_reports(ctx: dict[str, Any]) -> dict[str, Any]:
    """Roll the hours events are arriving in, and the hours of conversions that changed, into the
    reports' hourly tables. Idempotent: an hour is always rebuilt whole (server/reports/rollup.py)."""
    return asdict(await rollup.roll_up(ctx["clock"]()))


async def rebuild_previous_day(ctx: dict[str, Any]) -> dict[str, Any]:
    """Rebuild yesterday (UTC) from the raw events, so late events and anything a run missed show."""
    return asdict(await rollup.rebuild_day(ctx["clock"]() - timedelta(days=1)))
