"""Stripe events about payouts (Connect accounts, transfers), handed over by the Stripe event
inbox (server/stripe_events/service.py), which records and verifies every event."""

from __future__ import annotations

from typing import Any

from server.billing.stripe_api import Gateway
from server.payouts import connect, reversals


async def apply(
    event_type: str, obj: dict[str, Any], created: int | None, *, account: str | None, gateway: Gateway
) -> str | None:
    """What was done with the event, or None when it is not a payout event. `created` is when Stripe
    produced the event (Unix seconds): states only move forward, whatever the delivery order. `account`
    is the connected account the event happened on (only events from the Connect endpoint have one)."""
    if account:
        if event_type.startswith("account."):
            return await connect.apply_event(event_type, obj, created, account)
        return "ignored: a connected account's event"
    if event_type.startswith("account."):
        # The platform's own account, not a publisher's: Stripe sends those on the Connect endpoint only.
        return "ignored: not a connected account's event"
    if event_type == "transfer.reversed":
        return await reversals.transfer_reversed(obj, gateway.reversals)
    return None
