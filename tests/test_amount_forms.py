"""Every amount form reads what a French user types as they mean it (issue 14, item 1): "12,50" is
12.50, never 1,250.00; what only a locale could decide, with none to decide it, is refused with both
readings shown; each form echoes the amount as the server understood it, before money moves."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from server.accounts.tables import NetworkSetting, Role
from server.billing.tables import BillingSettings, Funding
from server.campaigns.tables import Campaign, Goal
from server.conversions.tables import Conversion
from server.ledger import service as ledger
from server.payouts.tables import PayoutMinimum, PublisherPayoutTerms
from tests.campaigns.test_advertiser_campaigns import BASE, campaign_form, shown_error
from tests.conversions.test_csv_upload import apply, errors_of, line_text, revshare_conversions, upload
from tests.conversions.test_review import browser_of
from tests.factories import login, make_advertiser, make_publisher, make_staff, post_form

FRENCH = "fr-FR,fr;q=0.9,en;q=0.5"
NBSP, NNBSP = "\u00a0", "\u202f"


def speaks(client, language: str | None):
    """The browser's Accept-Language from now on (None: the header is not sent at all)."""
    client.headers.pop("accept-language", None)
    if language:
        client.headers["accept-language"] = language
    return client


def notice(page: str) -> str:
    found = re.search(r'<p class="notice" role="status">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1)) if found else ""


async def advertiser_speaking(client, language: str | None) -> int:
    user_id, email = await make_advertiser()
    await login(client, email)
    speaks(client, language)
    await client.get("/advertiser")
    return user_id


# --- campaigns: goals and budgets --------------------------------------------------------------------


async def test_the_campaign_at_1250_a_sale_attack_now_stores_12_50_and_says_so(client):
    """The audit: a French advertiser typed 12,50 per sale and the campaign went live at €1,250.00."""
    await advertiser_speaking(client, FRENCH)
    response = await post_form(
        client,
        f"{BASE}/new",
        campaign_form(
            goal_0_advertiser="12,50", goal_0_publisher="10,00", total_budget="1 250,50", daily_budget="50,00"
        ),
    )
    assert response.status_code == 303, shown_error(response)
    goal = await Goal.select(Goal.advertiser_amount, Goal.publisher_amount).first()
    assert goal == {"advertiser_amount": 1250, "publisher_amount": 1000}  # not 125_000 and 100_000
    campaign = await Campaign.select(Campaign.total_budget_minor, Campaign.daily_budget_minor).first()
    assert campaign == {"total_budget_minor": 125_050, "daily_budget_minor": 5000}
    shown = notice((await client.get(response.headers["location"])).text)
    assert f"sale : vous payez 12,50{NBSP}€, l'éditeur gagne 10,00{NBSP}€" in shown
    assert f"budget total 1{NNBSP}250,50{NBSP}€; budget quotidien 50,00{NBSP}€" in shown
    assert await ledger.check() == []


async def test_an_ambiguous_goal_amount_is_refused_without_a_locale_and_read_by_the_locale_with_one(new_client):
    plain = new_client()
    await advertiser_speaking(plain, None)
    refused = await post_form(plain, f"{BASE}/new", campaign_form(goal_0_advertiser="1,250"))
    assert refused.status_code == 422
    assert "1,250 could be €1.25 or €1,250.00: write 1.25 or 1250." in shown_error(refused)
    assert await Campaign.count() == 0
    for language, minor in ((FRENCH, 125), ("it-IT", 125), ("de-DE", 125), ("es-ES", 125), ("en-US", 125_000)):
        browser = new_client()
        await advertiser_speaking(browser, language)
        response = await post_form(
            browser, f"{BASE}/new", campaign_form(goal_0_advertiser="1,250", goal_0_publisher="1,00", total_budget="")
        )
        assert response.status_code == 303, (language, shown_error(response))
        campaign_id = int(re.search(r"/(\d+)\?", response.headers["location"]).group(1))
        goal = await Goal.select(Goal.advertiser_amount).where(Goal.campaign == campaign_id).first()
        assert goal["advertiser_amount"] == minor, language


async def test_the_edit_form_shows_amounts_the_french_way_and_saving_it_unchanged_keeps_them(client):
    await advertiser_speaking(client, FRENCH)
    created = await post_form(client, f"{BASE}/new", campaign_form(goal_0_advertiser="12,50", total_budget="1250,5"))
    campaign_id = int(re.search(r"/(\d+)\?", created.headers["location"]).group(1))
    page = (await client.get(f"{BASE}/{campaign_id}/edit")).text
    values = dict(
        re.findall(r'name="(goal_0_advertiser|goal_0_publisher|total_budget|daily_budget)" value="([^"]*)"', page)
    )
    assert values == {
        "goal_0_advertiser": "12,50",
        "goal_0_publisher": "10,00",
        "total_budget": "1250,50",
        "daily_budget": "250,00",
    }
    assert 'data-amount data-amount-unless="goal_0_model=revshare" data-currency="EUR"' in page
    assert '<script src="/static/amounts.js" defer></script>' in page
    before = await Goal.select(Goal.advertiser_amount, Goal.publisher_amount).first()
    saved = await post_form(client, f"{BASE}/{campaign_id}/edit", campaign_form(**values))
    assert saved.status_code == 303, shown_error(saved)
    assert await Goal.select(Goal.advertiser_amount, Goal.publisher_amount).first() == before
    assert (await Campaign.select(Campaign.total_budget_minor).first())["total_budget_minor"] == 125_050


# --- billing: top-ups and the auto-pause threshold ---------------------------------------------------------


async def test_a_top_up_typed_12_50_in_french_is_confirmed_as_12_50_before_stripe_is_asked(client):
    await NetworkSetting.insert(NetworkSetting(key="funding_minimum", value="10", updated_at=datetime.now(UTC)))
    await advertiser_speaking(client, FRENCH)
    shown = await post_form(client, "/advertiser/billing/fund", {"amount": "12,50", "currency": "EUR"})
    assert shown.status_code == 200
    charge = html.unescape(re.search(r'data-testid="charge-amount">(.*?)<', shown.text).group(1))
    assert f"12,50{NBSP}€" in charge and "1" + NNBSP + "250" not in charge  # the words are the billing page's
    assert 'name="confirmed_minor" value="1250"' in shown.text
    assert await Funding.count() == 0  # nothing stored and Stripe not asked until confirmed
    # A confirmation for another amount than this reading (a changed locale, a doctored form) charges nothing.
    doctored = await post_form(
        client, "/advertiser/billing/fund", {"amount": "12,50", "currency": "EUR", "confirmed_minor": "125000"}
    )
    assert doctored.status_code == 200 and 'data-testid="amount-changed"' in doctored.text
    assert await Funding.count() == 0
    confirmed = await post_form(
        client, "/advertiser/billing/fund", {"amount": "12,50", "currency": "EUR", "confirmed_minor": "1250"}
    )
    assert confirmed.status_code == 200 and 'data-testid="checkout-link"' in confirmed.text, confirmed.text[-600:]
    funding = await Funding.select(Funding.amount_minor, Funding.currency, Funding.status).first()
    assert funding == {"amount_minor": 1250, "currency": "EUR", "status": "open"}
    assert await ledger.check() == []


async def test_an_ambiguous_top_up_is_refused_before_anything_is_stored(client):
    await advertiser_speaking(client, None)
    refused = await post_form(client, "/advertiser/billing/fund", {"amount": "1.250", "currency": "EUR"})
    assert refused.status_code == 422 and "could be €1.25 or €1,250.00" in html.unescape(refused.text)
    speaks(client, FRENCH)  # French writes thousands with a space: a dot decides nothing there either
    refused = await post_form(client, "/advertiser/billing/fund", {"amount": "1.250", "currency": "EUR"})
    assert refused.status_code == 422 and "écrivez 1,25 ou 1250" in html.unescape(refused.text)
    speaks(client, "it-IT")  # Italian groups thousands with a dot: €1,250.00, shown to confirm
    shown = await post_form(client, "/advertiser/billing/fund", {"amount": "1.250", "currency": "EUR"})
    assert 'name="confirmed_minor" value="125000"' in shown.text
    assert await Funding.count() == 0


async def test_the_auto_pause_threshold_typed_in_french_is_saved_as_12_50_and_echoed(client):
    advertiser_id = await advertiser_speaking(client, FRENCH)
    saved = await post_form(
        client, "/advertiser/billing/settings", {"auto_pause_threshold": "12,50", "currency": "EUR"}
    )
    assert saved.status_code == 200
    assert notice(saved.text).endswith(f" 12,50{NBSP}€.")  # echoed as read, in the reader's words
    row = (
        await BillingSettings.select(BillingSettings.auto_pause_threshold_minor)
        .where(BillingSettings.advertiser == advertiser_id)
        .first()
    )
    assert row["auto_pause_threshold_minor"] == 1250
    assert 'name="auto_pause_threshold" inputmode="decimal" value="12,50"' in saved.text  # shown back as typed


# --- payouts: the network's minimum and a publisher's own ---------------------------------------------------


async def test_payout_minimums_typed_in_french_are_saved_as_12_50_and_echoed(new_client, settings):
    finance = new_client()
    _, email = await make_staff(Role.finance)
    await login(finance, email)
    speaks(finance, FRENCH)
    await finance.get("/finance/payouts/settings")
    french = await post_form(finance, "/finance/payouts/settings/minimum", {"currency": "EUR", "minimum": "1,250"})
    assert french.status_code == 303  # French decides: 1,250 is 1.25
    assert (await PayoutMinimum.select(PayoutMinimum.minimum_minor).first())["minimum_minor"] == 125
    saved = await post_form(finance, "/finance/payouts/settings/minimum", {"currency": "eur", "minimum": "12,50"})
    assert saved.status_code == 303
    assert (await PayoutMinimum.select(PayoutMinimum.minimum_minor).first())["minimum_minor"] == 1250
    assert notice((await finance.get(saved.headers["location"])).text).endswith(f" 12,50{NBSP}€.")

    publisher_id, publisher_email = await make_publisher(settings)
    own = await post_form(
        finance,
        "/finance/payouts/settings/publisher",
        {"email": publisher_email, "publisher_minimum": "12,50", "publisher_currency": "EUR"},
    )
    assert own.status_code == 303
    row = (
        await PublisherPayoutTerms.select(PublisherPayoutTerms.minimum_minor)
        .where(PublisherPayoutTerms.publisher == publisher_id)
        .first()
    )
    assert row["minimum_minor"] == 1250
    assert notice((await finance.get(own.headers["location"])).text).endswith(f" 12,50{NBSP}€.")

    speaks(finance, None)
    ambiguous = await post_form(finance, "/finance/payouts/settings/minimum", {"currency": "EUR", "minimum": "1,250"})
    assert ambiguous.status_code == 400 and "1,250 could be €1.25 or €1,250.00" in html.unescape(ambiguous.text)
    assert (await PayoutMinimum.select(PayoutMinimum.minimum_minor).first())["minimum_minor"] == 1250


# --- the CSV upload -----------------------------------------------------------------------------------


async def test_a_french_csv_corrects_a_sale_to_12_50_and_an_ambiguous_cell_is_refused_on_its_line(
    client, new_client, settings
):
    setup = await revshare_conversions(settings, client, [10_000, 10_000])
    browser = speaks(await browser_of(new_client, setup), FRENCH)
    # Excel in French writes ';' between columns and a decimal comma.
    preview = await upload(browser, 'txn_id;status;amount\norder-0;approved;12,50\norder-1;approved;"1.250"\n')
    # (line_text reads the page as a person does: a no-break space is a space)
    row = line_text(preview.text, 2)  # in the upload page's French words: the amounts are what matter here
    assert all(amount in row for amount in ("12,50 €", "100,00 €", "1,25 €", "10,00 €")) and "1 250" not in row
    assert "1.250 peut se lire 1,25" in errors_of(preview.text)[3]
    # Applied under another language, the same text would read differently: refused, nothing changes.
    speaks(browser, "en-US")
    other = await apply(browser, preview.text)
    assert "changed after its preview" in html.unescape(other.text)
    assert (await Conversion.select(Conversion.sale_amount_minor).order_by(Conversion.id).first())[
        "sale_amount_minor"
    ] == 10_000
    speaks(browser, FRENCH)
    await apply(browser, preview.text)
    first = await Conversion.select(Conversion.sale_amount_minor, Conversion.status).order_by(Conversion.id).first()
    assert first == {"sale_amount_minor": 1250, "status": "approved"}  # 12.50, not 1,250.00
    assert await ledger.check() == []

    plain = speaks(await browser_of(new_client, setup), None)
    ambiguous = await upload(plain, 'order-1,approved,"1,250"\n')
    assert "1,250 could be €1.25 or €1,250.00: write 1.25 or 1250." in errors_of(ambiguous.text)[1]


# --- the echo beside each field -----------------------------------------------------------------------


async def test_the_preview_endpoint_answers_with_the_servers_own_reading_in_the_request_locale(client, new_client):
    await advertiser_speaking(client, FRENCH)
    read = await client.get("/amount/preview", params={"text": "12,50", "currency": "EUR"})
    assert read.status_code == 200
    assert read.json() == {"minor": 1250, "currency": "EUR", "display": f"12,50{NBSP}€", "locale": "fr_FR"}
    assert (await client.get("/amount/preview", params={"text": "1,250", "currency": "EUR"})).json()["minor"] == 125
    speaks(client, None)
    refused = await client.get("/amount/preview", params={"text": "1,250", "currency": "EUR"})
    assert refused.status_code == 422 and refused.json()["error"] == {
        "code": "ambiguous_amount",
        "message": "The amount: 1,250 could be €1.25 or €1,250.00: write 1.25 or 1250.",
    }
    junk = await client.get("/amount/preview", params={"text": "12,50", "currency": "EURO"})
    assert junk.status_code == 422 and "ISO 4217" in junk.json()["error"]["message"]
    stranger = await new_client().get("/amount/preview", params={"text": "12,50", "currency": "EUR"})
    assert stranger.status_code == 401
    page = (await client.get("/advertiser/billing")).text
    assert 'data-amount data-currency-from="currency"' in page and "/static/amounts.js" in page
    script = await client.get("/static/amounts.js")
    assert script.status_code == 200 and "/amount/preview?text=" in script.text
