"""Ads and ad slot pages in the reader's language: the ad's frame speaks the blog reader's language
(their browser's Accept-Language: they are no affnet user), and a publisher's slot pages and their
refusals are in French or Italian with local numbers."""

from __future__ import annotations

import html

from server.ads.tables import AdSlot
from tests.ads.factories import ad_campaign, decide, join, path_of, publisher, slot, slot_form
from tests.factories import login, make_publisher, post_form

FRENCH = {"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}
ITALIAN = {"Accept-Language": "it-IT,it;q=0.9"}


async def text_ad_frame(client, settings) -> str:
    """The frame path of a native text ad chosen for a fresh slot."""
    camp = await ad_campaign(settings, sizes=(), text="Boots for every trail")
    pub = await publisher(settings)
    await join(pub, camp)
    s = await slot(pub, format="native")
    return path_of((await decide(client, s["public_key"])).json()["frame_url"])


async def test_the_ad_frame_labels_the_ad_sponsored_in_the_blog_readers_language(app, client, settings):
    frame = await text_ad_frame(client, settings)

    french = (await client.get(frame, headers=FRENCH)).text
    assert '<html lang="fr">' in french and "<title>Publicité</title>" in french
    assert "Sponsorisé · shop.example.com" in french and "Boots for every trail" in french
    italian = (await client.get(frame, headers=ITALIAN)).text
    assert '<html lang="it">' in italian and "Sponsorizzato · shop.example.com" in italian
    # A language affnet does not speak, or none at all: English.
    for headers in ({"Accept-Language": "ja-JP"}, {}):
        english = (await client.get(frame, headers=headers)).text
        assert '<html lang="en">' in english and "Sponsored · shop.example.com" in english


async def test_a_french_publisher_reads_their_slot_pages_and_refusals_in_french(app, new_client, settings):
    _, email = await make_publisher(settings)
    browser = new_client()
    await login(browser, email)
    browser.headers.update(FRENCH)  # every request from now on, as a French browser sends it

    form = await browser.get("/publisher/slots/new")
    assert "Nouvel emplacement publicitaire" in form.text and "Pavé moyen, 300 × 250" in form.text
    refused = await post_form(browser, "/publisher/slots/new", slot_form(format="999x999"))
    assert 400 <= refused.status_code < 500
    assert "Choisissez l'un des formats proposés." in html.unescape(refused.text)
    assert await AdSlot.count() == 0

    created = await post_form(browser, "/publisher/slots/new", slot_form(name="Barre latérale"))
    page = html.unescape((await browser.get(created.headers["location"])).text)
    assert "Votre extrait de code" in page and ">actif<" in page
    assert "30 derniers jours : au moins la moitié de l'annonce à l'écran pendant une seconde." in page
    browser.headers.update(ITALIAN)
    listing = (await browser.get("/publisher/slots")).text
    assert "Spazi pubblicitari" in listing and "Barre latérale" in listing and "Rettangolo medio" in listing
