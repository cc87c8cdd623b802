"""Helpers for the stand-in's own tests: a Checkout Session to pay, a webhook receiver, waiting for an outcome."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.stripe_fixtures import StripeLocal


def new_session(local: StripeLocal, amount: int = 50000, **extra: Any):
    params = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": amount,
                    "product_data": {"name": "affnet balance top-up"},
                },
                "quantity": 1,
            }
        ],
        "success_url": "http://affnet.test/billing/return?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://affnet.test/billing",
        "client_reference_id": "funding-7",
        "metadata": {"funding_id": "7"},
        "payment_intent_data": {"metadata": {"funding_id": "7"}},
        **extra,
    }
    return local.client().v1.checkout.sessions.create(params, {"idempotency_key": f"test-{uuid.uuid4()}"})


def pay(local: StripeLocal, session) -> httpx.Response:
    """Click Pay on the session's page, as a browser would (the form posts to the page's own URL)."""
    page = httpx.get(session.url)
    assert page.status_code == 200
    return httpx.post(session.url, data={"email": "buyer@example.com"})


def events_for(local: StripeLocal, object_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The events whose object is, or points at, object_id: newest first."""
    listed = local.client().v1.events.list({"limit": limit})
    found = []
    for event in (e.to_dict() for e in listed.data):
        obj = event["data"]["object"]
        if object_id in (obj.get("id"), obj.get("charge"), obj.get("payment_intent"), obj.get("transfer")):
            found.append(event)
    return found


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


class Receiver:
    """A webhook endpoint on loopback that records each POST and answers the statuses it is told, then 200."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stripe/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
