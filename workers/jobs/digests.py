"""The daily mail digests (server/conversions/digests.py): a thin call each. Safe to run twice a day:
each person gets at most one digest of a kind a UTC day."""

from __future__ import annotations

from typing import Any

from server.conversions import digests


async def send_review_digests(ctx: dict[str, Any]) -> int:
    """Advertisers: the conversions waiting for their review. The number of digests written."""
    return await digests.review_digests(ctx["clock"]())


async def send_conversions_digests(ctx: dict[str, Any]) -> int:
    """Publishers: their conversions approved, rejected or reversed since the previous digest."""
    return await digests.conversions_digests(ctx["clock"]())
