"""Stripe events for billing tests, in Stripe's wire format, signed as Stripe signs them, and a
stand-in gateway for what the worker asks Stripe (used until and besides the local Stripe)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.billing import service as billing
from server.billing.stripe_api import CheckoutSession, Payment
from tests.factories import make_advertiser

_seq = itertools.count(1)


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{next(_seq):06d}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }


async def deliver(
    client: httpx.AsyncClient,
    evt: dict[str, Any],
    secret: str,
    *,
    times: int = 1,
    signature: str | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    payload = body if body is not None else json.dumps(evt).encode()
    response = None
    for _ in range(times):
        response = await client.post(
            "/stripe/webhook",
            content=payload,
            headers={"content-type": "application/json", "stripe-signature": signature or sign(payload, secret)},
        )
    assert response is not None
    return response


@dataclass
class Paid:
    """One funding paid at the fake Stripe: its ids, and events about it."""

    funding_id: int
    session_id: str
    payment_intent_id: str
    charge_id: str
    amount: int
    currency: str

    def checkout_completed(self, **kw: Any) -> dict[str, Any]:
        return event(
            "checkout.session.completed",
            {
                "id": self.session_id,
                "object": "checkout.session",
                "mode": "payment",
                "status": "complete",
                "payment_status": "paid",
                "payment_intent": self.payment_intent_id,
                "amount_total": self.amount,
                "currency": self.currency.lower(),
                "client_reference_id": str(self.funding_id),
                "metadata": {"funding_id": str(self.funding_id)},
            },
            **kw,
        )

    def payment_succeeded(self, **kw: Any) -> dict[str, Any]:
        return event(
            "payment_intent.succeeded",
            {
                "id": self.payment_intent_id,
                "object": "payment_intent",
                "status": "succeeded",
                "amount": self.amount,
                "amount_received": self.amount,
                "currency": self.currency.lower(),
                "latest_charge": self.charge_id,
                "metadata": {"funding_id": str(self.funding_id)},
            },
            **kw,
        )

    def charge_refunded(self, amount_refunded: int, **kw: Any) -> dict[str, Any]:
        return event(
            "charge.refunded",
            {
                "id": self.charge_id,
                "object": "charge",
                "amount": self.amount,
                "amount_refunded": amount_refunded,
                "refunded": amount_refunded == self.amount,
                "currency": self.currency.lower(),
                "metadata": {},
                "payment_intent": self.payment_intent_id,
                "status": "succeeded",
            },
            **kw,
        )

    def dispute(
        self, event_type: str, status: str, amount: int | None = None, dispute_id: str = "du_test_1", **kw: Any
    ) -> dict[str, Any]:
        return event(
            event_type,
            {
                "id": dispute_id,
                "object": "dispute",
                "amount": self.amount if amount is None else amount,
                "currency": self.currency.lower(),
                "charge": self.charge_id,
                "payment_intent": self.payment_intent_id,
                "status": status,
                "reason": "fraudulent",
            },
            **kw,
        )


@dataclass
class FakeStripe:
    """What billing asks Stripe, answered from memory; payments succeed with the stand-in's EU fee."""

    sessions: list[dict[str, Any]] = field(default_factory=list)
    payments: dict[str, Payment] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)  # sessions closed on the advertiser's cancel
    asked: int = 0

    async def create_checkout_session(
        self,
        *,
        funding_id: int,
        reference: str,
        amount_minor: int,
        currency: str,
        email: str,
        success_url: str,
        cancel_url: str,
        vat_minor: int = 0,
        vat_label: str = "",
    ) -> CheckoutSession:
        self.sessions.append(
            {
                "funding_id": funding_id,
                "reference": reference,
                "amount": amount_minor,
                "vat": vat_minor,
                "currency": currency,
                "success_url": success_url,
                "cancel_url": cancel_url,
            }
        )
        return CheckoutSession(id=f"cs_test_{funding_id}", url=f"https://checkout.stripe.test/pay/cs_test_{funding_id}")

    async def expire_checkout_session(self, session_id: str, *, idempotency_key: str) -> bool:
        self.expired.append(session_id)
        return True

    async def payment(self, payment_intent_id: str) -> Payment:
        self.asked += 1
        return self.payments[payment_intent_id]

    async def reversals(self, transfer_id: str) -> list[dict[str, Any]]:
        raise AssertionError("billing's events name no transfer")

    def pay(self, funding_id: int, amount: int, currency: str = "EUR", fee: int | None = None) -> Paid:
        fee = (amount * 150 + 5_000) // 10_000 + 25 if fee is None else fee
        paid = Paid(
            funding_id, f"cs_test_{funding_id}", f"pi_test_{funding_id}", f"ch_test_{funding_id}", amount, currency
        )
        self.payments[paid.payment_intent_id] = Payment(
            payment_intent_id=paid.payment_intent_id,
            status="succeeded",
            amount_minor=amount,
            currency=currency,
            charge_id=paid.charge_id,
            receipt_url=f"https://pay.stripe.test/receipts/{paid.charge_id}",
            fee_minor=fee,
            fee_currency=currency,
            funding_id=funding_id,
        )
        return paid


async def advertiser() -> CurrentUser:
    user_id, email = await make_advertiser()
    return CurrentUser(id=user_id, email=email, role=Role.advertiser, via="test")


async def funded(fake: FakeStripe, who: CurrentUser, amount: str = "500.00", currency: str = "EUR") -> Paid:
    """A top-up started through the service (a Checkout Session at the fake) and paid there."""
    await billing.start_funding(who, {"amount": amount, "currency": currency}, fake, "http://testserver.local")
    session = fake.sessions[-1]
    return fake.pay(session["funding_id"], session["amount"], currency)
