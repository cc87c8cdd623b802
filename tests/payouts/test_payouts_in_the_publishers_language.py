"""A publisher's payouts in their language: the payouts page, one payout's page and the payout history
API say where the money is in French or Italian, with local amounts and dates."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from tests.payouts.test_history import API, paid_publisher, publisher_key, signed_in, text_of

FRENCH = {"Accept-Language": "fr-FR"}
ITALIAN = {"Accept-Language": "it-IT"}


async def test_a_french_publisher_reads_their_paid_payout_in_french(new_client, settings, stripe_local):
    publisher, line = await paid_publisher(settings, stripe_local, 123_456)
    browser = await signed_in(new_client, publisher)
    today = f"{datetime.now(UTC):%d/%m/%Y}"

    listing = html.unescape((await browser.get("/publisher/payouts", headers=FRENCH)).text)
    assert "Historique des paiements" in listing and "Payé" in listing
    assert text_of(listing, "payout-history-amount") == "1\u202f234,56\u00a0€"
    assert text_of(listing, "payout-last") == f"1\u202f234,56\u00a0€ le {today}"

    page = html.unescape((await browser.get(f"/publisher/payouts/lines/{line['id']}", headers=FRENCH)).text)
    assert text_of(page, "payout-line-status") == "Payé"
    assert text_of(page, "payout-line-detail").startswith("Envoyé sur votre compte Stripe ;")
    assert f"ligne de paiement {line['id']}" in page


async def test_the_payout_history_api_answers_in_the_language_asked_for(new_client, settings, stripe_local):
    publisher, _ = await paid_publisher(settings, stripe_local, 10_000)
    key = await publisher_key(publisher)

    [italian] = (await new_client().get(API, headers={**key, **ITALIAN})).json()["lines"]
    assert (italian["status"], italian["status_words"], italian["amount_minor"]) == ("paid", "Pagato", 10_000)
    assert italian["detail"].startswith("Inviato al tuo account Stripe;")
    [english] = (await new_client().get(API, headers=key)).json()["lines"]
    assert (english["status"], english["status_words"]) == ("paid", "Paid")
