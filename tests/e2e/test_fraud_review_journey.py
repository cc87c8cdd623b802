"""An advertiser finds a conversion held by a fraud rule in the review queue, reads its evidence
(the rule, the campaign's median, the click's timeline) and rejects it with a reason; the publisher
sees that reason on their conversions page. Headless Chromium against the real server, on each
database engine; nothing is charged."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from server.conversions.tables import Conversion
from server.ledger import service as ledger
from server.ledger.tables import LedgerTxn
from tests.conversions.test_fraud_rules import too_fast_conversion
from tests.e2e.pages import log_in


@pytest.mark.browser
async def test_an_advertiser_rejects_a_held_conversion_and_the_publisher_sees_why(
    app, live_server, new_page, client, settings
):
    # Twenty sales two minutes after their clicks, then one a second after its click: held as too fast.
    setup, _, fast = await too_fast_conversion(app, client, settings, hold_days=0)

    page = await new_page()
    await log_in(page, setup.advertiser.email)
    await page.goto("/advertiser")
    await page.get_by_role("link", name="Review").click()
    held = page.locator(f'[data-testid=held][data-conversion-id="{fast}"]')
    await expect(page.get_by_test_id("held")).to_have_count(1)
    await expect(held.locator('[data-rule="too_fast"]')).to_contain_text("too fast")
    await expect(held.locator('[data-rule="too_fast"]')).to_contain_text("campaign_median_seconds")
    await expect(held.get_by_test_id("timeline")).to_contain_text("clicked")
    await expect(held.get_by_test_id("timeline")).to_contain_text("visitor")
    await expect(held.get_by_test_id("baseline")).to_contain_text("21 conversions today")

    await held.get_by_label(f"Reason for conversion {fast}").fill("Ordered a second after the click: a bot")
    await held.get_by_role("button", name="Reject").click()
    await expect(page.locator("p.notice")).to_contain_text(f"Conversion #{fast} rejected")
    await expect(page.get_by_test_id("held")).to_have_count(0)

    stored = await Conversion.select(Conversion.status, Conversion.status_reason).where(Conversion.id == fast).first()
    assert stored == {"status": "rejected", "status_reason": "Ordered a second after the click: a bot"}
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion") == 0
    assert await ledger.check() == []

    publisher = await new_page()
    await log_in(publisher, setup.publisher_email)
    await publisher.goto("/publisher/conversions")
    await expect(publisher.locator(f'[data-conversion-id="{fast}"]')).to_contain_text(
        "Ordered a second after the click: a bot"
    )
