"""A funded advertiser with pending conversions rejects one with a reason, then approves the others by
uploading a CSV: sees the preview, applies it, and sees the statuses and the charge; in headless
Chromium against the real server, on each database engine. The ledger balances afterwards, and the
publisher sees the reason and their pending earnings (never the advertiser's price)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from server.conversions.tables import Conversion
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from tests.conversions.test_review import ids_of, pending_conversions
from tests.e2e.pages import log_in


@pytest.mark.browser
async def test_reject_one_then_approve_the_rest_by_csv(live_server, new_page, client, settings):
    # Three pending sales of 10.00 (the publisher earns 8.00 each), and 50.00 on the advertiser's balance.
    setup = await pending_conversions(settings, client, 3, fund=5_000)
    first, second, third = await ids_of(setup)

    page = await new_page()
    await log_in(page, setup.advertiser.email)
    await page.goto("/advertiser/conversions")
    rows = page.get_by_test_id("conversion")
    await expect(rows).to_have_count(3)

    # Reject the first one, with a reason the publisher will see.
    await page.locator(f'[data-conversion-id="{first}"] input[name=conversion_id]').check()
    await page.locator("#decide input[name=reason]").fill("Order cancelled by the customer")
    await page.get_by_role("button", name="Reject selected").click()
    await expect(page.locator("p.notice")).to_contain_text("Rejected 1")
    rejected = page.locator(f'[data-conversion-id="{first}"]')
    await expect(rejected).to_contain_text("rejected")
    await expect(rejected).to_contain_text("Order cancelled by the customer")

    # Approve the other two with a CSV file (a header, Windows line ends, as a spreadsheet saves it).
    csv = "txn_id,status\r\nSpring Boots-order-1,approved\r\nSpring Boots-order-2,Approved\r\n"
    await page.locator("#upload-form input[name=file]").set_input_files(
        files=[{"name": "decisions.csv", "mimeType": "text/csv", "buffer": csv.encode()}]
    )
    await page.locator("#upload-form").get_by_role("button", name="Preview").click()
    await expect(page.locator("h1")).to_contain_text("Preview")
    preview_rows = page.get_by_test_id("upload-row")
    await expect(preview_rows).to_have_count(2)
    await expect(preview_rows.nth(0)).to_contain_text("pending → approved, charges €10.00")
    await expect(page.get_by_test_id("totals")).to_contain_text("charges €20.00")
    await expect(page.get_by_test_id("totals")).to_contain_text("your balance is €50.00")
    # The preview changed nothing.
    assert {
        r["status"] for r in await Conversion.select(Conversion.status).where(Conversion.id.is_in([second, third]))
    } == {"pending"}
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 5_000

    await page.get_by_role("button", name="Apply 2 changes").click()
    await expect(page.locator("h1")).to_contain_text("CSV applied")
    await expect(page.get_by_test_id("count-approved")).to_have_text("2")
    await expect(page.get_by_test_id("count-skipped")).to_have_text("0")

    await page.get_by_role("link", name="Back to conversions").click()
    for conversion_id, status in ((first, "rejected"), (second, "approved"), (third, "approved")):
        await expect(page.locator(f'[data-conversion-id="{conversion_id}"] .badge')).to_have_text(status)

    # The charge: 2 x 10.00 from the advertiser, 2 x 8.00 pending for the publisher, 2 x 2.00 margin.
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 3_000
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 1_600
    assert await ledger.balance(K.network_revenue, "EUR") == 400
    assert await ledger.check() == []

    # The publisher sees it from their side: the reason, and 16.00 earned, pending until the hold ends.
    publisher = await new_page()
    await log_in(publisher, setup.publisher_email)
    await publisher.goto("/publisher")
    await expect(publisher.get_by_test_id("earnings-pending")).to_have_text("€16.00")
    await expect(publisher.get_by_test_id("earnings-available")).to_have_text("€0.00")
    await publisher.goto("/publisher/conversions")
    refused = publisher.locator(f'[data-conversion-id="{first}"]')
    await expect(refused).to_contain_text("Order cancelled by the customer")
    await expect(publisher.locator('[data-testid=conversion][data-status="approved"]')).to_have_count(2)
    await expect(publisher.locator("body")).not_to_contain_text("€10.00")  # never the advertiser's price
