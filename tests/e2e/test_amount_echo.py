"""In a French browser, each amount field says how the server read what was typed, before saving:
"= 12,50 €" beside "12,50", and why "1.250" would be refused (issue 14, item 1)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import TIMEOUT_MS
from tests.e2e.pages import log_in
from tests.factories import make_advertiser


@pytest.mark.browser
async def test_a_french_advertiser_sees_each_amount_as_the_server_reads_it(browser, live_server):
    _, email = await make_advertiser()
    context = await browser.new_context(base_url=live_server.url, locale="fr-FR")  # Accept-Language: fr-FR
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = await context.new_page()
        await log_in(page, email)
        await page.wait_for_url(f"{live_server.url}/advertiser")
        await page.goto("/advertiser/billing")
        await page.fill("input[name=auto_pause_threshold]", "12,50")
        echo = page.locator("input[name=auto_pause_threshold] + output.amount-echo")
        await expect(echo).to_have_text("= 12,50\u00a0€")
        await page.fill("input[name=auto_pause_threshold]", "1.250")
        await expect(echo).to_contain_text("Le montant : 1.250 peut se lire 1,25\u00a0€ ou 1\u202f250,00\u00a0€")
        await expect(echo).to_have_class("amount-echo error")

        await page.goto("/advertiser/campaigns/new")
        await page.fill("input[name=goal_0_advertiser]", "12,50")
        await expect(page.locator("input[name=goal_0_advertiser] + output")).to_have_text("= 12,50\u00a0€")
        await page.fill("input[name=total_budget]", "1 250,5")
        await expect(page.locator("input[name=total_budget] + output")).to_have_text("= 1\u202f250,50\u00a0€")
        # A RevShare goal's fields are percentages: no amount echo for them.
        await page.select_option("select[name=goal_0_model]", "revshare")
        await expect(page.locator("input[name=goal_0_advertiser] + output")).to_have_text("")
    finally:
        await context.close()
