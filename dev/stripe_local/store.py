"""The stand-in's state, all in memory (a restart forgets everything), and its error type.

One `Store` holds every object by id, the events newest last, the idempotency records, the log of
API requests, and the test controls' switches. Operations run without awaiting, so in one event
loop each request sees and leaves the store consistent."""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "2026-10-28.endive"  # what stripe-python 16.1 sends as Stripe-Version
_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Config:
    public_url: str  # where a browser reaches the stand-in: Checkout, receipt and onboarding pages
    secret_key: str | None = None  # None: any sk_test_… key is accepted
    # Two endpoints, as on Stripe: the platform's own events go to the first; events of connected accounts
    # (`account.updated` of an Express account, carrying `account`) only to the Connect endpoint.
    webhook_url: str | None = None
    webhook_secret: str = ""
    connect_webhook_url: str | None = None
    connect_webhook_secret: str = ""
    # Seconds a card charge's funds stay pending before they can be transferred (Stripe: days, by country).
    # The test card 4000000000000077 skips the wait, as on Stripe.
    available_delay: int = 2 * 86400
    tick_seconds: float = 0.2  # how often sessions past expires_at expire and pending funds become available
    # Card fee on every charge: fee_bps / 10000 of the amount, rounded half up to the minor unit, plus
    # fee_fixed_minor (Stripe's EU standard card price: 1.5 % + €0.25).
    fee_bps: int = 150
    fee_fixed_minor: int = 25
    dispute_fee_minor: int = 2000  # Stripe's EU dispute fee, €20; kept when the dispute is won
    min_charge_minor: int = 50  # Stripe's minimum charge (€0.50)
    # Seconds every /v1 request waits before it is answered (POST /_local/latency): Stripe's own latency,
    # for measuring what concurrency buys (real transfers take a few hundred milliseconds).
    latency: float = 0.0
    webhook_attempts: int = 8
    webhook_retry_delay: float = 1.0  # doubled after each failed attempt…
    webhook_max_delay: float = 60.0  # …up to this


class StripeError(Exception):
    """An error answered as Stripe's error object. `saved`: the idempotency layer keeps it (execution began)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002
        param: str | None = None,
        code: str | None = None,
        saved: bool = False,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.saved = saved
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param:
            error["param"] = self.param
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://docs.stripe.com/error-codes/{self.code.replace('_', '-')}"
        return {"error": error}


def not_found(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", param=param, code="resource_missing")


@dataclass
class Idempotent:
    fingerprint: tuple[str, str, str]
    status: int
    body: bytes


@dataclass
class Store:
    config: Config
    clock: Callable[[], float] = time.time
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    payloads: dict[str, bytes] = field(default_factory=dict)
    idempotency: dict[str, Idempotent] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    line_items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by Checkout Session id
    # What a Checkout Session passes on to its PaymentIntent (payment_intent_data), by session id.
    intent_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    account_links: dict[str, dict[str, Any]] = field(default_factory=dict)  # by the onboarding page's token
    fail_next_transfer: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_of_intent: dict[str, str] = field(default_factory=dict)  # PaymentIntent id → its Checkout Session
    reversals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by transfer id, newest first
    # Seconds added to the clock by POST /_local/clock/advance (tests: a session's expiry, funds' availability).
    offset: int = 0
    # The balance kept as it changes, so a transfer's check and the clock's tick cost nothing per object held:
    # the available sum by currency, the balance transactions still pending, and the open sessions' expiries.
    available: dict[str, int] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)
    open_sessions: dict[str, int] = field(default_factory=dict)
    # Set by the app: called with each new event id (schedules its webhook delivery).
    on_event: Callable[[str], None] = lambda event_id: None
    # The API request being served, for the events' `request` field (None for page clicks).
    current_request: dict[str, Any] | None = None

    def now(self) -> int:
        return int(self.clock()) + self.offset

    def new_id(self, prefix: str, length: int = 24) -> str:
        return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        return obj

    def get(self, object_id: str, kind: str, label: str | None = None, param: str = "id") -> dict[str, Any]:
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != kind:
            raise not_found(label or kind.replace("_", " "), object_id, param)
        return obj

    def base(self, prefix: str, kind: str, **fields: Any) -> dict[str, Any]:
        return {"id": self.new_id(prefix), "object": kind, "created": self.now(), "livemode": False, **fields}

    def endpoint(self, event: dict[str, Any]) -> tuple[str | None, str]:
        """Where an event goes and the secret it is signed with: a connected account's to the Connect endpoint."""
        if event.get("account"):
            return self.config.connect_webhook_url, self.config.connect_webhook_secret
        return self.config.webhook_url, self.config.webhook_secret

    def emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
        *,
        account: str | None = None,
    ) -> dict[str, Any]:
        """Record a Stripe event holding a snapshot of `obj`, and hand it to the webhook sender. `account`: the
        connected account the event happened on (Stripe adds the field only to such events)."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        req = self.current_request or {}
        event = {
            "id": self.new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": req.get("id"), "idempotency_key": req.get("idempotency_key")},
            "type": event_type,
        }
        if account:  # where Stripe puts it: after `object`
            event = {"id": event["id"], "object": "event", "account": account, **event}
        event["pending_webhooks"] = 1 if self.endpoint(event)[0] else 0
        self.events.append(event)
        self.objects[event["id"]] = event
        # The exact bytes every delivery of this event carries (Stripe sends the same body on each retry).
        self.payloads[event["id"]] = json.dumps(event, indent=2).encode()
        self.on_event(event["id"])
        return event

    def event(self, event_id: str) -> dict[str, Any]:
        return self.get(event_id, "event")
