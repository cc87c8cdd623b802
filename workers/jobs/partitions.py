"""The raw event tables' lifecycle on a schedule: day partitions made ahead (PostgreSQL), and raw
clicks and impressions dropped once retention lets them go (both engines; the rollups stay)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from server.core import partitions
from server.reports import retention


async def create_partitions_ahead(ctx: dict[str, Any]) -> dict[str, Any]:
    """Yesterday's to a week ahead's partitions of clicks and impressions, and any day whose rows
    wait in the DEFAULT partition. Idempotent; two workers at once make each partition once."""
    return asdict(await partitions.create_ahead(ctx["clock"]().date()))


async def drop_expired_raw_events(ctx: dict[str, Any]) -> dict[str, Any]:
    """Raw events older than the retention floor (server/reports/retention.py says what holds it back)."""
    retained = await retention.drop_raw_events(ctx["clock"](), ctx["settings"].raw_event_retention_days)
    return asdict(retained)
