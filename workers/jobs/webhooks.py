"""Webhook and postback delivery: the outbox's due messages, sent (server/webhooks/delivery.py)."""

from __future__ import annotations

from typing import Any

from server.webhooks import delivery

LIMIT = 1000  # at most this many messages a run; the next run, ten seconds on, goes on


async def deliver_webhooks(ctx: dict[str, Any]) -> int:
    """Send what is due; the number of messages delivered. Safe to run twice at once."""
    return await delivery.deliver_due(ctx["clock"](), limit=LIMIT)
