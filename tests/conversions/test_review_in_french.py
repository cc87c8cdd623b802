"""An advertiser who reads French gets the conversion review in French: the upload preview's
line-by-line outcomes and errors, the held-conversions queue, the rules page and their refusals;
amounts in French formats, machine words (txn_id, approved) as they are typed. The conversions
API answers in the language its caller asks for, with the same machine codes."""

from __future__ import annotations

from tests.conversions.factories import api_key, campaign_and_click
from tests.conversions.test_csv_upload import errors_of, flat, line_text, upload
from tests.conversions.test_review import browser_of, pending_conversions
from tests.factories import csrf


async def test_a_french_advertiser_reads_the_upload_preview_and_its_errors_in_french(client, new_client, settings):
    setup = await pending_conversions(settings, client, 2, fund=5_000)
    browser = await browser_of(new_client, setup)
    browser.headers["accept-language"] = "fr-FR"
    preview = await upload(browser, "Spring Boots-order-0,approved\nSpring Boots-order-1,maybe\n")
    assert preview.status_code == 200, preview.text
    assert "en attente → approuvée, débite 10,00 €" in line_text(preview.text, 1)
    assert errors_of(preview.text)[2] == "Le statut est « maybe » : écrivez approved, rejected ou reversed."

    refused = await upload(browser, "txn_id,status,colour\nSpring Boots-order-0,approved,red\n")
    assert refused.status_code == 422
    assert "L’en-tête nomme une colonne « colour » ; les colonnes sont txn_id, status, amount, reason." in flat(
        refused.text
    )


async def test_the_review_queue_and_rules_pages_speak_french(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    browser = await browser_of(new_client, setup)
    browser.headers["accept-language"] = "fr-FR"
    queue = await browser.get("/advertiser/review")
    assert queue.status_code == 200
    assert "<h1>Conversions retenues</h1>" in queue.text
    assert "Aucune conversion n’est retenue pour contrôle." in queue.text

    rules_path = f"/advertiser/campaigns/{setup.campaign_id}/rules"
    rules = await browser.get(rules_path)
    assert "Règles antifraude de cette campagne" in rules.text
    assert "Retenir les conversions qui arrivent trop vite après leur clic" in rules.text
    refused = await browser.post(
        rules_path, data={"_csrf_token": csrf(browser), "too_fast.min_samples": "1"}, follow_redirects=False
    )
    assert refused.status_code in (400, 422)
    assert (
        "Trop rapide : conversions nécessaires avant de se fier à la médiane : un nombre entier de 5 à 10000."
        in flat(refused.text)
    )


async def test_the_conversions_api_answers_in_the_readers_language_and_keeps_its_codes(app, client, settings):
    setup, click_id, _token = await campaign_and_click(settings, client)
    headers = {"authorization": f"Bearer {await api_key(setup.advertiser)}", "accept-language": "it-IT"}
    ok = await client.post("/api/v1/conversions", headers=headers, json={"click_id": click_id, "txn_id": "o1"})
    [accepted] = ok.json()["results"]
    assert accepted["status"] == "accepted"
    assert accepted["message"] == "Conversione registrata; resta in attesa fino alla fine del periodo di convalida."
    missing = await client.post("/api/v1/conversions", headers=headers, json={"click_id": click_id})
    [refused] = missing.json()["results"]
    assert refused["code"] == "txn_id_required"  # the machine code stays as it is
    assert refused["message"].startswith("txn_id è obbligatorio")
