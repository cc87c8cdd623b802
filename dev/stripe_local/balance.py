"""The platform's balance (GET /v1/balance), and what time does to the store: funds that become available,
Checkout Sessions that expire. `advance` runs on a timer and before every API request, so a test that moves
the clock (POST /_local/clock/advance) sees the same as one that waits."""

from __future__ import annotations

from typing import Any

from dev.stripe_local.payments import expire_checkout_session
from dev.stripe_local.store import Store, StripeError

# Stripe's answer when a transfer needs more than the available balance (a request that began executing:
# saved under its idempotency key, so trying again needs a new key).
INSUFFICIENT = (
    "You have insufficient available funds in your Stripe account. Try adding funds directly to your "
    "available balance by creating Charges using the 4000000000000077 test card."
)


def _sums(store: Store) -> tuple[dict[str, int], dict[str, int]]:
    pending: dict[str, int] = {}
    for txn in store.pending:
        pending[txn["currency"]] = pending.get(txn["currency"], 0) + txn["net"]
    return dict(store.available), pending


def available(store: Store, currency: str) -> int:
    return store.available.get(currency.lower(), 0)


def require_available(store: Store, amount: int, currency: str) -> None:
    if available(store, currency) < amount:
        raise StripeError(400, INSUFFICIENT, code="balance_insufficient", saved=True)


def balance_object(store: Store) -> dict[str, Any]:
    avail, pending = _sums(store)
    currencies = sorted(set(avail) | set(pending)) or ["eur"]

    def amounts(sums: dict[str, int]) -> list[dict[str, Any]]:
        return [{"amount": sums.get(c, 0), "currency": c, "source_types": {"card": sums.get(c, 0)}} for c in currencies]

    return {"object": "balance", "available": amounts(avail), "pending": amounts(pending), "livemode": False}


def advance(store: Store) -> None:
    """Pending funds whose day has come become available; open sessions past expires_at expire (with the
    `checkout.session.expired` event, as on Stripe)."""
    now = store.now()
    if any(txn["available_on"] <= now for txn in store.pending):
        for txn in [t for t in store.pending if t["available_on"] <= now]:
            txn["status"] = "available"
            store.available[txn["currency"]] = store.available.get(txn["currency"], 0) + txn["net"]
        store.pending = [t for t in store.pending if t["status"] == "pending"]
    for session_id in [i for i, expires_at in store.open_sessions.items() if expires_at <= now]:
        expire_checkout_session(store, session_id)
