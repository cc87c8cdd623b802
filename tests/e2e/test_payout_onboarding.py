"""A publisher sets up payouts in local mode: the payouts page hands them to the Stripe stand-in's Express
onboarding, they click Complete, and come back to "Ready for payouts" (affnet reads the account from Stripe on
their return); Stripe's signed `account.updated` reaches the live server's Connect endpoint and agrees.
Headless Chromium, real server, real Redis, on each database engine."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from server.payouts.account_tables import PayoutAccount
from tests.e2e.pages import log_in
from tests.e2e.test_funding_journey import run_worker, wait_for_events
from tests.factories import make_publisher

# `affnet serve` talks to the Stripe stand-in (tests/e2e/conftest.py).
pytestmark = pytest.mark.usefixtures("live_server_uses_the_stand_in")


@pytest.mark.browser
async def test_publisher_sets_up_payouts_and_sees_ready(live_server, new_page, settings, stripe_local):
    stripe_local.control("POST", "/_local/webhook_endpoint", url=f"{live_server.url}/stripe/webhook")
    stripe_local.control(
        "POST", "/_local/webhook_endpoint", url=f"{live_server.url}/stripe/connect-webhook", connect="true"
    )
    try:
        publisher_id, email = await make_publisher(settings)
        page = await new_page()
        await log_in(page, email)
        await page.get_by_role("link", name="Payouts").click()
        await expect(page.locator("h1")).to_have_text("Payouts")
        await expect(page.get_by_test_id("payout-account")).to_have_attribute("data-state", "not_set_up")
        await page.get_by_role("button", name="Set up payouts").click()

        # Stripe's Express onboarding (the stand-in's page): complete it.
        await page.wait_for_url(f"{stripe_local.base_url}/connect/onboarding/*")
        await page.get_by_role("button", name="Complete").click()

        # Back at affnet, which asks Stripe for the account rather than wait for its event (the return URL
        # itself proves nothing).
        await page.wait_for_url(f"{live_server.url}/publisher/payouts/return")
        await expect(page.get_by_test_id("payout-account-words")).to_have_text("Ready for payouts", timeout=10_000)
        row = await PayoutAccount.select().where(PayoutAccount.publisher == publisher_id).first()
        assert row["stripe_account_id"].startswith("acct_") and row["payouts_enabled"]

        # Stripe's account.updated reaches the Connect endpoint too, and agrees.
        await wait_for_events("account.updated")
        await run_worker(settings)  # the job the webhook enqueued

        await page.get_by_role("link", name="Back to payouts").click()
        await expect(page.get_by_test_id("payout-account")).to_have_attribute("data-state", "ready")
        await expect(page.get_by_role("button", name="Set up payouts")).to_have_count(0)
        assert await PayoutAccount.count() == 1
    finally:
        stripe_local.control("POST", "/_local/webhook_endpoint", url="")
        stripe_local.control("POST", "/_local/webhook_endpoint", url="", connect="true")
