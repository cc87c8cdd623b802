"""Issue 6's journey, in headless Chromium against the real server, on each database engine: a publisher
sets up payouts through the Stripe stand-in's Express onboarding and earns (real conversions, approved
by the reconciliation job); finance user A prepares the period's batch on /finance/payouts and holds
another publisher's line with a reason, then cannot approve (four eyes); finance user B approves; the
real worker pays; the publisher sees "Paid" with the amount in their payout history. The stand-in
counted exactly one transfer for the line and none for the held one, and the ledger is clean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import expect

from server.accounts.tables import Role
from server.conversions import approval
from server.conversions.tables import Conversion
from server.core import i18n
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.payouts import service as payouts
from server.payouts.account_tables import PayoutAccount
from server.payouts.tables import PayoutLine
from tests.conversions.test_review import pending_conversions
from tests.e2e.pages import log_in
from tests.e2e.test_funding_journey import run_worker, wait_for_events
from tests.factories import make_staff
from tests.payouts.factories import connected_account, fresh_line_ids, made, transfer_posts

# `affnet serve` talks to the Stripe stand-in (tests/e2e/conftest.py).
pytestmark = pytest.mark.usefixtures("live_server_uses_the_stand_in")


async def earned_in_the_last_period(*campaign_ids: int) -> datetime:
    """The campaigns' pending sales as if reported last period: their hold ended, and the reconciliation
    job approved them (publisher available at once), a minute before the cut-off that closed last. The
    server prepares the period that ended before its own clock's now, and money after the cut-off waits
    for the next one."""
    _, cutoff = payouts.last_cutoff(await payouts.schedule_terms(), datetime.now(UTC))
    earned = cutoff - timedelta(minutes=1)
    await Conversion.update({Conversion.hold_until: earned - timedelta(days=1)}).where(
        Conversion.campaign.is_in(list(campaign_ids))
    )
    outcome = await approval.run(now=earned)
    assert outcome.approved == await Conversion.count().where(Conversion.campaign.is_in(list(campaign_ids)))
    return cutoff


@pytest.mark.browser
async def test_a_publisher_is_paid_after_one_finance_person_prepares_and_holds_and_another_approves(
    live_server, new_page, client, settings, stripe_local
):
    stripe_local.control("POST", "/_local/webhook_endpoint", url=f"{live_server.url}/stripe/webhook")
    stripe_local.control(
        "POST", "/_local/webhook_endpoint", url=f"{live_server.url}/stripe/connect-webhook", connect="true"
    )
    try:
        await fresh_line_ids()  # Stripe keys derive from line ids; the stand-in remembers other tests' keys
        # Seven sales of 10.00 for the publisher (8.00 each: 56.00), eight for another publisher (64.00).
        setup = await pending_conversions(settings, client, 7, fund=10_000)
        other = await pending_conversions(settings, client, 8, fund=10_000, name="Other Shop")

        # The publisher sets up payouts: Stripe's Express onboarding (the stand-in's page), then ready.
        publisher = await new_page()
        await log_in(publisher, setup.publisher_email)
        await publisher.get_by_role("link", name="Payouts", exact=True).click()
        await publisher.get_by_role("button", name="Set up payouts").click()
        await publisher.wait_for_url(f"{stripe_local.base_url}/connect/onboarding/*")
        await publisher.get_by_role("button", name="Complete").click()
        await publisher.wait_for_url(f"{live_server.url}/publisher/payouts/return")
        await wait_for_events("account.updated")
        await run_worker(settings)
        await expect(publisher.get_by_test_id("payout-account-words")).to_have_text("Ready for payouts")
        # The other publisher's account was set up the same way earlier.
        now = datetime.now(UTC)
        await PayoutAccount.insert(
            PayoutAccount(
                publisher=other.publisher.id,
                stripe_account_id=await connected_account(stripe_local),
                payouts_enabled=True,
                details_submitted=True,
                created_at=now,
                updated_at=now,
            )
        )
        cutoff = await earned_in_the_last_period(setup.campaign_id, other.campaign_id)
        assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 5_600

        # Finance user A prepares the period in the browser and holds the other publisher's line.
        _, preparer_email = await make_staff(Role.finance)
        preparer = await new_page()
        await log_in(preparer, preparer_email)
        await preparer.get_by_role("link", name="Payouts", exact=True).click()
        await preparer.get_by_role("button", name="Prepare the last period now").click()
        await expect(preparer.get_by_test_id("prepare-outcome")).to_contain_text(
            "(EUR) prepared now. 2 lines to pay. 0 publishers carried over."
        )
        await preparer.get_by_test_id("batch").filter(has_text="EUR").get_by_role("link").click()
        await expect(preparer.get_by_test_id("total")).to_have_text("€120.00")
        line = await PayoutLine.select().where(PayoutLine.publisher == setup.publisher.id).first()
        held = await PayoutLine.select().where(PayoutLine.publisher == other.publisher.id).first()
        assert line["batch"] == held["batch"]
        batch_id = line["batch"]
        held_row = preparer.locator(f'[data-testid="line"][data-id="{held["id"]}"]')
        await held_row.locator("input[name=reason]").fill("traffic under review")
        await held_row.get_by_role("button", name="Hold").click()
        await expect(held_row).to_have_attribute("data-status", "held")
        await expect(preparer.get_by_test_id("total")).to_have_text("€56.00")

        # A prepared and changed it: four eyes show A what the batch waits for instead of an Approve button.
        await preparer.reload()
        await expect(preparer.get_by_test_id("waiting-for-approval")).to_contain_text(
            "Waiting for a second person to approve."
        )
        await expect(preparer.get_by_test_id("cannot-approve")).to_contain_text(
            f"You prepared this batch; You held line #{held['id']} of"
        )
        await expect(preparer.get_by_test_id("cannot-approve")).to_contain_text(
            "another finance person must approve this batch."
        )
        await expect(preparer.get_by_role("button", name="Approve these lines")).to_have_count(0)
        await expect(preparer.get_by_test_id("status")).to_have_text("prepared")

        # Finance user B approves.
        _, approver_email = await make_staff(Role.finance)
        approver = await new_page()
        await log_in(approver, approver_email)
        await approver.goto(f"/finance/payouts/{batch_id}")
        await approver.get_by_role("button", name="Approve these lines").click()
        await expect(approver.get_by_test_id("people")).to_contain_text(f"Approved by {approver_email}")
        await expect(approver.get_by_test_id("status")).to_have_text("approved")

        # While it waits to be paid the page follows the batch by itself, saying when it last asked.
        await expect(approver.get_by_test_id("live-status")).to_be_visible()
        first_check = await approver.get_by_test_id("last-checked").text_content()
        await expect(approver.get_by_test_id("last-checked")).not_to_have_text(first_check, timeout=10_000)

        # The worker runs the job the approval enqueued: one transfer for the line. No reload: the
        # page sees the status change and shows the paid batch, then stops asking.
        await run_worker(settings)
        await expect(approver.get_by_test_id("status")).to_have_text("done", timeout=15_000)
        await expect(approver.get_by_test_id("live-status")).to_have_count(0)
        line = await PayoutLine.select().where(PayoutLine.id == line["id"]).first()
        assert line["status"] == "paid" and line["stripe_transfer_id"].startswith("tr_")

        # The publisher sees it paid, with the amount, and the transfer on the line's page.
        await publisher.goto("/publisher/payouts")
        row = publisher.get_by_test_id("payout-history-line")
        await expect(row).to_have_count(1)
        await expect(row).to_have_attribute("data-status", "paid")
        await expect(row.get_by_test_id("payout-history-status")).to_have_text("Paid")
        await expect(row.get_by_test_id("payout-history-amount")).to_have_text("€56.00")
        await expect(row.get_by_test_id("payout-history-transfer")).to_have_text(line["stripe_transfer_id"])
        await row.get_by_test_id("payout-history-link").click()
        await expect(publisher.get_by_test_id("payout-line")).to_have_attribute("data-status", "paid")
        await expect(publisher.get_by_test_id("payout-line-amount")).to_have_text("€56.00")
        await expect(publisher.get_by_test_id("payout-line-transfer")).to_have_text(line["stripe_transfer_id"])
        await expect(publisher.locator("h1")).to_contain_text(i18n.date_text(cutoff))  # in English: 12/1/2026

        # The other publisher sees their payout held, with finance's reason, and their money back.
        held_publisher = await new_page()
        await log_in(held_publisher, other.publisher_email)
        await held_publisher.goto("/publisher/payouts")
        held_line = held_publisher.get_by_test_id("payout-history-line")
        await expect(held_line).to_have_attribute("data-status", "held")
        await expect(held_line).to_contain_text("traffic under review")

        # Stripe's side: exactly one transfer made for the line, none for the held one.
        posts = transfer_posts(stripe_local, line["id"])
        assert len(made(posts)) == 1 and {p["idempotency_key"] for p in posts} == {
            f"payout-line:{line['id']}:attempt:1"
        }
        assert transfer_posts(stripe_local, held["id"]) == []
        transfer = await stripe_local.client().v1.transfers.retrieve_async(line["stripe_transfer_id"])
        assert (transfer.amount, transfer.currency) == (5_600, "eur")

        assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 0
        assert await ledger.balance(K.publisher_available, "EUR", other.publisher.id) == 6_400
        assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
        assert await ledger.check() == []
    finally:
        stripe_local.control("POST", "/_local/webhook_endpoint", url="")
        stripe_local.control("POST", "/_local/webhook_endpoint", url="", connect="true")
