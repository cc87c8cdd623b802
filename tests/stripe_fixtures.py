"""Shared fixtures: affnet's local Stripe stand-in over real HTTP (one per test session, its platform balance
funded as a Stripe test account's would be with the test card 4000000000000077), a fresh one with an empty
balance and its own clock (`new_stripe_account`), and `deliver`, which posts one of its signed events to the
affnet endpoint Stripe would send it to (/stripe/webhook, or /stripe/connect-webhook for a connected account's
event) through an in-process client."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from dev.services import free_port, wait_for_port
from server.billing import stripe_api
from server.core.settings import ROOT

AVAILABLE_AT_ONCE = "4000000000000077"  # Stripe's test card whose funds skip the pending balance


@dataclass(frozen=True)
class StripeLocal:
    base_url: str  # give it to the SDK as its API base: StripeClient(key, base_addresses={"api": base_url})
    secret_key: str
    webhook_secret: str
    connect_webhook_secret: str

    def client(self) -> stripe.StripeClient:
        # No SDK retries, so a test sees each answer the stand-in gives.
        return stripe_api.new_client(self.secret_key, self.base_url, network_retries=0)

    def control(self, method: str, path: str, **data: object) -> httpx.Response:
        """Call a test control under /_local/ (form-encoded)."""
        response = httpx.request(method, self.base_url + path, data=data or None, timeout=10)
        response.raise_for_status()
        return response

    def fund_platform(self, amount: int, currency: str = "eur", *, card: str = AVAILABLE_AT_ONCE) -> str:
        """A payment into the platform's Stripe balance (available at once with the default card, pending
        for the stand-in's available delay with 4242…); its Checkout Session id."""
        session = self.client().v1.checkout.sessions.create(
            {
                "mode": "payment",
                "success_url": "http://affnet.test/ok",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": currency,
                            "unit_amount": amount,
                            "product_data": {"name": "platform funds"},
                        },
                    }
                ],
            },
            {"idempotency_key": f"fund-platform:{uuid.uuid4()}"},
        )
        self.control("POST", f"/_local/checkout/sessions/{session.id}/pay", card=card)
        return session.id

    def available(self, currency: str = "eur") -> int:
        balance = self.client().v1.balance.retrieve()
        return sum(a.amount for a in balance.available if a.currency == currency)


@contextmanager
def running_stand_in(log_dir: Path, local_keys: StripeLocal | None = None, *options: str) -> Iterator[StripeLocal]:
    """`affnet-dev stripe-local` on a free loopback port, without webhook endpoints: tests deliver events
    themselves with `deliver`, or set one with POST /_local/webhook_endpoint."""
    port = free_port()
    keys = local_keys or StripeLocal(
        "", "sk_test_local" + secrets.token_hex(12), "whsec_" + secrets.token_hex(24), "whsec_" + secrets.token_hex(24)
    )
    local = StripeLocal(f"http://127.0.0.1:{port}", keys.secret_key, keys.webhook_secret, keys.connect_webhook_secret)
    env = {
        **os.environ,
        "STRIPE_SECRET_KEY": local.secret_key,
        "STRIPE_WEBHOOK_SECRET": local.webhook_secret,
        "STRIPE_CONNECT_WEBHOOK_SECRET": local.connect_webhook_secret,
    }
    env.pop("STRIPE_LOCAL_CONNECT_WEBHOOK_URL", None)
    log = open(log_dir / f"stripe-local-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dev.cli",
            "stripe-local",
            "--port",
            str(port),
            "--webhook-retry-delay",
            "0.05",
            "--webhook-attempts",
            "4",
            *options,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        yield local
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def stripe_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeLocal]:
    """The stand-in shared by the session, like one Stripe test account: transfers need available funds, so
    its balance is funded once, with the test card that makes them available at once."""
    with running_stand_in(tmp_path_factory.mktemp("stripe-local")) as local:
        for _ in range(5):
            local.fund_platform(99_999_999)  # Stripe's largest single charge (€999,999.99)
        yield local


@pytest.fixture
def new_stripe_account(stripe_local: StripeLocal, tmp_path: Path) -> Iterator[Callable[..., StripeLocal]]:
    """Start another stand-in: an empty balance and a clock of its own (POST /_local/clock/advance), with the
    shared stand-in's keys and secrets, so the app under test accepts its events. Options as for
    `affnet-dev stripe-local` (e.g. "--available-delay", "60")."""
    started: list[Any] = []

    def start(*options: str) -> StripeLocal:
        context = running_stand_in(tmp_path, stripe_local, *options)
        started.append(context)
        return context.__enter__()

    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)


async def deliver(
    client: httpx.AsyncClient, stripe_local: StripeLocal, event_id: str, times: int = 1
) -> list[httpx.Response]:
    """Post the event `times` times, each with the exact payload bytes and a fresh Stripe-Signature, as Stripe's
    deliveries and retries would, to the endpoint Stripe sends it to; return affnet's answers."""
    answers = []
    async with httpx.AsyncClient(base_url=stripe_local.base_url, timeout=10) as local:
        for _ in range(times):
            signed = await local.get(f"/_local/events/{event_id}/signed")
            signed.raise_for_status()
            path = "/stripe/connect-webhook" if json.loads(signed.content).get("account") else "/stripe/webhook"
            answers.append(
                await client.post(
                    path,
                    content=signed.content,
                    headers={
                        "Stripe-Signature": signed.headers["stripe-signature"],
                        "Content-Type": "application/json",
                    },
                )
            )
    return answers
