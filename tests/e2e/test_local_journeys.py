"""Issue 19's journeys as a French and an Italian person makes them, in headless Chromium with a
fr-FR or it-IT browser, on a phone (390 px) and on a laptop (1280 px):

- a blogger signs up, joins a campaign, builds a link, earns from a reader's sale and is paid;
- an advertiser signs up, creates a campaign paying `12,50`, funds `1 250,00` through Stripe's
  Checkout (the local stand-in), and approves the sale a publisher brought.

Each page is checked for the language (`<html lang>`, its words) and the locale's formats
(`12,50 €`, `1 250,00 €`, dates as 12/05/2026); on a phone every page must fit the screen (no
sideways scroll) and every navigation entry must be reachable from the menu button. Screenshots of
each step go to $AFFNET_ARTIFACTS (default .ci/artifacts/screenshots), kept by CI as artefacts."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect
from redis.asyncio import Redis

from server.accounts import mailbox
from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Publisher, Role, User
from server.campaigns import service as campaigns
from server.campaigns.tables import Campaign, Link
from server.conversions import approval
from server.conversions.tables import Conversion
from server.core import i18n, jobs, locale
from server.core.settings import ROOT
from server.ledger import postings
from server.ledger import service as ledger
from server.payouts import execute, keys
from server.payouts import review as payout_review
from server.payouts import service as payouts
from server.payouts.tables import PayoutLine
from tests.conversions.factories import secrets_of
from tests.e2e.test_funding_journey import run_worker, wait_for_events
from tests.factories import (
    FRENCH_BUSINESS,
    ITALIAN_BUSINESS,
    PASSWORD,
    give_billing_profile,
    make_advertiser,
    make_publisher,
    make_staff,
    unique_email,
)
from tests.payouts.factories import after_next_cutoff, connected_account, fresh_line_ids, payout_account
from tests.tracking.factories import campaign_form

ARTIFACTS = Path(os.environ.get("AFFNET_ARTIFACTS", ROOT / ".ci" / "artifacts")) / "screenshots"
PHONE, LAPTOP = 390, 1280
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
# Words each language must show (from the glossary every catalogue follows), beside the catalogue's
# own translations the journeys look up.
WORDS = {
    "fr": {"campaigns": "Campagnes", "payouts": "Paiements", "logout": "Se déconnecter"},
    "it": {"campaigns": "Campagne", "payouts": "Pagamenti", "logout": "Esci"},
}
THOUSANDS = {"fr": "1 250,00 €", "it": "1.250,00 €"}  # French groups with a (narrow no-break) space
FRENCH_TOTAL = "1 500,00 €"  # with 20 % VAT
SIZES = [("fr-FR", PHONE), ("it-IT", PHONE), ("fr-FR", LAPTOP), ("it-IT", LAPTOP)]


def spaced(text: str) -> str:
    """Babel writes French groups with a narrow no-break space and € after a no-break space."""
    return text.replace("\u202f", " ").replace("\xa0", " ")


def tr(tag: str, english: str, **variables) -> str:
    """What the page must say for `english` in the browser's language (from the catalogue)."""
    with locale.using(tag.replace("-", "_")):
        return i18n.gettext(english, **variables)  # tests/unit/test_catalogues.py: every one is there


def today() -> str:
    """Today's date as fr-FR and it-IT both write it (12/05/2026), in UTC: the journeys' people save no zone."""
    return datetime.now(UTC).strftime("%d/%m/%Y")


class Journey:
    """A person's browser in a language and at a width, checking each page as it goes."""

    def __init__(self, page, tag: str, width: int, name: str) -> None:
        self.page, self.tag, self.width, self.name = page, tag, width, name
        self.language = tag[:2]
        self.step = 0

    async def check(self, what: str) -> None:
        """The page speaks the language, fits the screen, and is kept as a screenshot."""
        page = self.page
        await expect(page.locator("html")).to_have_attribute("lang", self.language)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= self.width, f"{page.url} is {width}px wide at {self.width}px: the page scrolls sideways"
        # Only a table may scroll inside its card; anything else wider than its card is cut off.
        spilled = await page.evaluate(
            """[...document.querySelectorAll('.card')]
                 .filter(card => !card.querySelector('table, pre') && card.scrollWidth > card.clientWidth + 1)
                 .map(card => card.textContent.trim().slice(0, 60))"""
        )
        assert spilled == [], f"{page.url}: words run past their card at {self.width}px: {spilled}"
        self.step += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{self.name}-{self.tag}-{self.width}-{self.step:02d}-{what}.png"
        await page.screenshot(path=str(shot), full_page=True)

    async def text(self) -> str:
        return spaced(await self.page.locator("main").inner_text())

    async def nav(self, english: str) -> None:
        """Follow a navigation entry, through the menu button on a phone; on a phone, check first
        that every entry is on screen once the menu is open."""
        page = self.page
        button = page.locator("header .menu-button")
        if self.width == PHONE:
            await expect(button).to_be_visible()
            await button.click()
            entries = page.locator("#site-menu a, #site-menu button")
            for i in range(await entries.count()):
                entry = entries.nth(i)
                await expect(entry).to_be_visible()
                box = await entry.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= self.width, (
                    f"{await entry.inner_text()!r} is off screen"
                )
                assert box["height"] >= 40, f"{await entry.inner_text()!r} is too small to tap ({box['height']}px)"
        else:
            await expect(button).to_be_hidden()
        await page.locator("header nav").get_by_role("link", name=tr(self.tag, english), exact=True).click()


async def new_person(browser, live_server, tag: str, width: int):
    context = await browser.new_context(
        base_url=live_server.url,
        locale=tag,
        viewport={"width": width, "height": 844 if width == PHONE else 900},
        is_mobile=width == PHONE,
        has_touch=width == PHONE,
    )
    context.set_default_timeout(10_000)
    return context, await context.new_page()


# `affnet serve` talks to the Stripe stand-in (tests/e2e/conftest.py).
# What `make run` shows a French or Italian reader: on its SQLite (tests/conftest.py: one engine per journey).
pytestmark = [pytest.mark.usefixtures("live_server_uses_the_stand_in"), pytest.mark.browser_engine("sqlite")]


async def funded_campaign(name: str) -> tuple[CurrentUser, int]:
    """An advertiser's campaign paying 12.50 a sale (10.00 to the publisher), funded with 500.00."""
    adv_id, adv_email = await make_advertiser()
    advertiser = CurrentUser(id=adv_id, email=adv_email, role=Role.advertiser, via="test")
    campaign_id = await campaigns.create_campaign(advertiser, campaign_form(name=name, goal_0_advertiser="12.50"))
    await postings.fund_advertiser(adv_id, 50_000, "EUR", reference_id=1, key=f"fund-{campaign_id}")
    return advertiser, campaign_id


async def a_sale(live_server, code: str, campaign_id: int, txn: str, amount: str = "4590") -> None:
    """A reader follows the link and buys: the advertiser's server reports the sale."""
    async with httpx.AsyncClient(base_url=live_server.url) as reader:
        click = await reader.get(f"/c/{code}", headers={"user-agent": BROWSER_UA}, follow_redirects=False)
        assert click.status_code == 302, click.text
        click_id = re.search(r"click_id=([^&]+)", click.headers["location"]).group(1)
        token = (await secrets_of(campaign_id))["postback_secret"]
        answer = await reader.get(
            "/postback", params={"click_id": click_id, "txn_id": txn, "token": token, "amount": amount}
        )
        assert answer.json()["status"] == "accepted", answer.text


@pytest.mark.browser
@pytest.mark.parametrize(("tag", "width"), SIZES)
async def test_a_blogger_signs_up_links_earns_and_is_paid_in_their_language(
    tag, width, live_server, browser, settings, stripe_local
):
    await fresh_line_ids()
    _, campaign_id = await funded_campaign("Scarpe da trekking" if tag == "it-IT" else "Chaussures de randonnée")
    email = unique_email("blogueur")
    context, page = await new_person(browser, live_server, tag, width)
    me = Journey(page, tag, width, "blogger")
    try:
        # Sign up in the browser's language.
        await page.goto("/signup/publisher")
        await expect(page.locator("h1")).to_have_text(tr(tag, "Join as a publisher"))
        await me.check("signup")
        await page.fill("input[name=email]", email)
        await page.fill("input[name=password]", PASSWORD)
        await page.fill("input[name=display_name]", "Sentieri e Sapori" if tag == "it-IT" else "Sentiers et Saveurs")
        await page.fill("input[name=blog_url]", "https://sentieri.example")
        await page.fill("textarea[name=audience]", "Randonneurs")
        await page.locator("main form button[type=submit]").click()
        await page.wait_for_url(f"{live_server.url}/publisher")
        await me.check("waiting")
        publisher = await Publisher.select(Publisher.id, Publisher.user).where(Publisher.user.email == email).first()
        await mailbox.mark_verified(publisher["user"])  # as if they opened the link (approval needs it)
        admin = CurrentUser(id=None, email="system", role=Role.admin, via="test")  # type: ignore[arg-type]
        await accounts.review_publisher(admin, publisher["id"], approve=True)

        # Find the campaign in the marketplace (through the menu on a phone) and join it.
        await me.nav("Campaigns")
        await expect(page.locator("header nav")).to_contain_text(WORDS[me.language]["campaigns"])
        card = page.locator(f'[data-testid=campaign][data-campaign-id="{campaign_id}"]')
        assert "10,00 €" in spaced(await card.inner_text())  # what a sale earns, in the locale's format
        await me.check("marketplace")
        await card.locator("form button[type=submit]").first.click()
        await expect(card.get_by_test_id("membership-state")).to_be_visible()

        # Build a link with a sub-ID.
        await page.goto(f"/publisher/campaigns/{campaign_id}/link")
        await page.fill("input[name=sub1]", "articolo-1")
        await page.locator("main form button[type=submit]").first.click()
        built = (await page.get_by_test_id("built-url").inner_text()).strip()
        assert built.startswith(f"{live_server.url}/c/") and "sub1=articolo-1" in built
        await me.check("link")

        # A reader buys through it; the advertiser's hold ends and the sale is approved.
        user_id = (await User.select(User.id).where(User.email == email).first())["id"]
        code = (await Link.select(Link.code).where(Link.campaign == campaign_id, Link.publisher == user_id).first())[
            "code"
        ]
        await a_sale(live_server, code, campaign_id, f"ordine-{tag}-{width}")
        await Conversion.update({Conversion.hold_until: datetime.now(UTC) - timedelta(days=1)}).where(
            Conversion.campaign == campaign_id
        )
        for _ in range(50):  # the click row is stored by the server's next flush (every 0.5 s)
            if (await approval.run(now=datetime.now(UTC))).approved:
                break
            await asyncio.sleep(0.1)
        assert await Conversion.count().where(Conversion.status == "approved") == 1

        # The earnings, in the locale's money format.
        await me.nav("Dashboard")
        shown = await me.text()
        assert "10,00 €" in shown, shown
        await me.check("earnings")

        # Paid: a connected Stripe account, the period's batch prepared and approved by finance,
        # the worker pays, and the payout history shows the amount and the day as the locale writes them.
        await payout_account(user_id, await connected_account(stripe_local))
        await payouts.set_minimum("EUR", 500, actor_id=None)  # a blogger's first 10,00 € is paid
        batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
        finance_id, finance_email = await make_staff(Role.finance)
        await payout_review.approve(
            CurrentUser(id=finance_id, email=finance_email, role=Role.finance, via="test"), batch_id
        )
        redis = Redis.from_url(settings.redis_url)
        try:  # as the approve button does, once the approval has committed
            await jobs.enqueue(redis, execute.JOB, batch_id, job_id=keys.execution_job_id(batch_id))
        finally:
            await redis.aclose()
        await run_worker(settings)
        line = (
            await PayoutLine.select(PayoutLine.status, PayoutLine.amount_minor)
            .where(PayoutLine.publisher == user_id)
            .first()
        )
        assert line == {"status": "paid", "amount_minor": 1000}
        await me.nav("Payouts")
        await expect(page.locator("header nav")).to_contain_text(WORDS[me.language]["payouts"])
        history = await me.text()
        assert "10,00 €" in history and today() in history, history
        await me.check("payouts")
        assert await ledger.check() == []
    finally:
        await context.close()


@pytest.mark.browser
@pytest.mark.parametrize(("tag", "width"), SIZES)
async def test_an_advertiser_creates_funds_and_approves_in_their_language(
    tag, width, live_server, browser, settings, stripe_local
):
    stripe_local.control("POST", "/_local/webhook_endpoint", url=f"{live_server.url}/stripe/webhook")
    email = unique_email("annonceur")
    context, page = await new_person(browser, live_server, tag, width)
    me = Journey(page, tag, width, "advertiser")
    try:
        await page.goto("/signup/advertiser")
        await me.check("signup")
        await page.fill("input[name=email]", email)
        await page.fill("input[name=password]", PASSWORD)
        await page.fill("input[name=company_name]", "Montagna Srl" if tag == "it-IT" else "Montagne SARL")
        await page.fill("input[name=website]", "https://shop.example.com")
        await page.locator("main form button[type=submit]").click()
        await page.wait_for_url(f"{live_server.url}/advertiser")
        await me.check("dashboard")
        user = await User.select(User.id).where(User.email == email).first()
        await mailbox.mark_verified(user["id"])  # as if they opened the link (tests/e2e/test_mail_journey.py does)
        # Their billing details, as the billing-profile page stores them (tests/invoicing/ fill in that form):
        # a French company pays 20 % VAT on top of its top-up, an Italian one none (reverse charge).
        await give_billing_profile(user["id"], **(FRENCH_BUSINESS if tag.startswith("fr") else ITALIAN_BUSINESS))

        # A campaign paying 12,50 a sale, typed as the locale writes it.
        await me.nav("Campaigns")
        await page.goto("/advertiser/campaigns/new")
        await page.fill("input[name=name]", "Scarponi")
        await page.fill("input[name=currency]", "EUR")
        await page.fill("textarea[name=allowed_domains]", "shop.example.com")
        await page.fill("input[name=landing_url]", "https://shop.example.com/scarponi")
        await page.fill("input[name=goal_0_name]", "vendita")
        await page.select_option("select[name=goal_0_model]", "cpa")
        await page.fill("input[name=goal_0_advertiser]", "12,50")
        await me.check("campaign-form")
        await page.locator("main form button[type=submit]").last.click()
        await page.wait_for_url(re.compile(r".*/advertiser/campaigns/\d+\?saved=1$"))
        campaign = await Campaign.select(Campaign.id).where(Campaign.name == "Scarponi").first()
        shown = await me.text()
        assert "12,50 €" in shown, shown
        await me.check("campaign")

        # Fund 1 250,00 through Stripe's Checkout.
        await me.nav("Billing")
        await page.fill("input[name=amount]", "1250,00")
        await page.select_option("form[action='/advertiser/billing/fund'] select[name=currency]", "EUR")
        await page.locator("form[action='/advertiser/billing/fund'] button[type=submit]").click()
        big = THOUSANDS[me.language]
        assert big in spaced(await page.get_by_test_id("charge-net").inner_text())
        total = spaced(await page.get_by_test_id("charge-total").inner_text())
        assert total == (FRENCH_TOTAL if tag.startswith("fr") else big), total
        await me.check("confirm")
        await page.get_by_test_id("confirm-pay").click()
        await page.wait_for_url(f"{stripe_local.base_url}/pay/*")
        await page.get_by_role("button", name="Pay").click()
        await page.wait_for_url(f"{live_server.url}/advertiser/billing/return?session_id=*")
        await wait_for_events("checkout.session.completed", "payment_intent.succeeded")
        await run_worker(settings)
        for _ in range(100):  # the worker credits it: the page refreshes itself
            if spaced(await page.get_by_test_id("balance-amount").inner_text()) == big:
                break
            await asyncio.sleep(0.1)
        assert spaced(await page.get_by_test_id("balance-amount").inner_text()) == big
        await me.check("funded")

        # A publisher brings a sale; the advertiser approves it from the conversions list.
        publisher_id, _ = await make_publisher(settings)
        await campaigns.join(CurrentUser(id=publisher_id, email="", role=Role.publisher, via="test"), campaign["id"])
        code = (
            await Link.select(Link.code).where(Link.campaign == campaign["id"], Link.publisher == publisher_id).first()
        )["code"]
        await a_sale(live_server, code, campaign["id"], f"order-{tag}-{width}")
        await me.nav("Conversions")
        row = page.locator("tr[data-conversion-id]").first
        listed = spaced(await row.inner_text())
        assert "12,50 €" in listed and "45,90 €" in listed, listed  # the price and the sale amount
        assert today() in listed, listed
        await row.locator("input[name=conversion_id]").check()
        await page.locator("button[name=action][value=approve]").click()
        await expect(page.locator("[role=status]")).to_be_visible()
        await me.check("approved")
        status = await Conversion.select(Conversion.status).where(Conversion.campaign == campaign["id"]).first()
        assert status["status"] == "approved"
        assert await ledger.check() == []
    finally:
        await context.close()
        stripe_local.control("POST", "/_local/webhook_endpoint", url="")
