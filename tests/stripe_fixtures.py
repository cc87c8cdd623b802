"""Shared fixtures: affnet's local Stripe stand-in over real HTTP (one per test session), and `deliver`, which
posts one of its signed events to affnet's /stripe/webhook through an in-process client."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import stripe

from server.devservices import free_port, wait_for_port
from server.settings import ROOT


@dataclass(frozen=True)
class StripeLocal:
    base_url: str  # give it to the SDK as its API base: StripeClient(key, base_addresses={"api": base_url})
    secret_key: str
    webhook_secret: str

    def client(self) -> stripe.StripeClient:
        # No SDK retries, so a test sees each answer the stand-in gives.
        return stripe.StripeClient(self.secret_key, base_addresses={"api": self.base_url}, max_network_retries=0)

    def control(self, method: str, path: str, **data: object) -> httpx.Response:
        """Call a test control under /_local/ (form-encoded)."""
        response = httpx.request(method, self.base_url + path, data=data or None, timeout=10)
        response.raise_for_status()
        return response


@pytest.fixture(scope="session")
def stripe_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripeLocal]:
    """The stand-in (`affnet stripe-local`) on a free loopback port, without a webhook endpoint: tests deliver
    events themselves with `deliver`, or set one with POST /_local/webhook_endpoint."""
    port = free_port()
    local = StripeLocal(base_url=f"http://127.0.0.1:{port}", secret_key="sk_test_local" + secrets.token_hex(12),
                        webhook_secret="whsec_" + secrets.token_hex(24))
    env = {**os.environ, "STRIPE_SECRET_KEY": local.secret_key, "STRIPE_WEBHOOK_SECRET": local.webhook_secret}
    log = open(tmp_path_factory.mktemp("stripe-local") / "stripe-local.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "stripe-local", "--port", str(port),
                             "--webhook-retry-delay", "0.05", "--webhook-attempts", "4"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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


async def deliver(client: httpx.AsyncClient, stripe_local: StripeLocal, event_id: str,
                  times: int = 1) -> list[httpx.Response]:
    """Post the event to `client`'s /stripe/webhook `times` times, each with the exact payload bytes and a fresh
    Stripe-Signature, as Stripe's deliveries and retries would; return affnet's answers."""
    answers = []
    async with httpx.AsyncClient(base_url=stripe_local.base_url, timeout=10) as local:
        for _ in range(times):
            signed = await local.get(f"/_local/events/{event_id}/signed")
            signed.raise_for_status()
            answers.append(await client.post("/stripe/webhook", content=signed.content, headers={
                "Stripe-Signature": signed.headers["stripe-signature"], "Content-Type": "application/json"}))
    return answers
