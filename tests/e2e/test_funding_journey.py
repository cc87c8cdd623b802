"""An advertiser adds 500.00 in local mode: the billing page sends them to the Stripe stand-in's
Checkout, they click Pay, come back to "processing", and once Stripe's signed webhook has reached
the live server and the worker has processed it, the page shows 500.00 credited (the network
absorbs Stripe's fee). Headless Chromium, real server, real Redis, on each database engine."""

from __future__ import annotations

import asyncio

import pytest
from arq.connections import RedisSettings
from arq.worker import Worker
from playwright.async_api import expect

from server.billing.tables import Funding
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.stripe_events.tables import StripeEvent
from tests.e2e.pages import log_in
from tests.factories import make_advertiser
from workers import settings as worker_settings

# `affnet serve` talks to the Stripe stand-in (tests/e2e/conftest.py).
pytestmark = pytest.mark.usefixtures("live_server_uses_the_stand_in")


async def run_worker(settings) -> None:
    worker = Worker(
        functions=worker_settings.FUNCTIONS,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        burst=True,
        ctx={"settings": settings},
        poll_delay=0.05,
        handle_signals=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()


async def wait_for_events(*types: str) -> None:
    found: set[str] = set()
    for _ in range(100):  # ten seconds
        found = {r["type"] for r in await StripeEvent.select(StripeEvent.type)}
        if set(types) <= found:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"Stripe's webhooks did not arrive: {types}, found {found}")


@pytest.mark.browser
async def test_advertiser_funds_500_and_sees_it_credited(live_server, new_page, settings, stripe_local):
    stripe_local.control("POST", "/_local/webhook_endpoint", url=f"{live_server.url}/stripe/webhook")
    try:
        advertiser_id, email = await make_advertiser()
        page = await new_page()
        await log_in(page, email)
        await page.get_by_role("link", name="Billing", exact=True).click()
        await expect(page.locator("h1")).to_have_text("Billing")
        await page.fill("input[name=amount]", "500.00")
        await page.select_option("form[action='/advertiser/billing/fund'] select[name=currency]", "EUR")
        await page.click("button:has-text('Add funds')")
        # The amount as the server read it, to confirm before Stripe is asked for anything.
        await expect(page.get_by_test_id("charge-amount")).to_have_text("You will be charged €500.00")
        await page.get_by_test_id("confirm-pay").click()

        # Stripe's Checkout (the stand-in's page): pay.
        await page.wait_for_url(f"{stripe_local.base_url}/pay/*")
        await page.get_by_role("button", name="Pay").click()

        # Back at affnet: processing until the webhook has been processed; never credited by the return.
        await page.wait_for_url(f"{live_server.url}/advertiser/billing/return?session_id=*")
        await expect(page.get_by_test_id("processing")).to_contain_text("€500.00 is processing")
        await wait_for_events("checkout.session.completed", "payment_intent.succeeded")
        assert await ledger.balance(K.advertiser_balance, "EUR", advertiser_id) == 0

        await run_worker(settings)  # the jobs the webhook enqueued
        await expect(page.get_by_test_id("credited")).to_contain_text("€500.00 was added", timeout=10_000)
        await expect(page.get_by_test_id("balance-amount")).to_have_text("€500.00")

        await page.get_by_role("link", name="Back to billing").click()
        funding = page.get_by_test_id("funding").first
        await expect(funding).to_have_attribute("data-status", "credited")
        await expect(funding.get_by_test_id("funding-status")).to_have_text("Credited")
        charge_id = (await Funding.select(Funding.charge_id).first())["charge_id"]
        await expect(funding.get_by_role("link", name="Receipt")).to_have_attribute(
            "href", f"{stripe_local.base_url}/receipts/{charge_id}"
        )
        assert await ledger.balance(K.advertiser_balance, "EUR", advertiser_id) == 50_000
        assert await ledger.check() == []
    finally:
        stripe_local.control("POST", "/_local/webhook_endpoint", url="")
