"""The slot page offers the HTML snippet and the WordPress plugin side by side, and says which
WordPress roles can paste the raw HTML (the others lose the script without a warning)."""

from __future__ import annotations

import html
import io
import re
import zipfile

from server.ads.tables import AdSlot
from tests.ads.factories import slot_form
from tests.ads.test_slot_pages import publisher_client
from tests.conftest import BASE_URL
from tests.factories import post_form


def section(page: str, testid: str) -> str:
    match = re.search(rf'<section id="[^"]*" data-testid="{testid}">(.*?)</section>', page, re.S)
    assert match, f"no {testid} section"
    return match.group(1)


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


async def test_the_slot_page_offers_the_snippet_and_the_wordpress_plugin(app, new_client, settings):
    client, user_id = await publisher_client(new_client, settings)
    await post_form(client, "/publisher/slots/new", slot_form(format="728x90"))
    row = await AdSlot.select().where(AdSlot.publisher == user_id).first()
    page = (await client.get(f"/publisher/slots/{row['id']}")).text

    snippet = section(page, "html-snippet")
    assert 'data-testid="snippet"' in snippet
    assert (
        "In WordPress, only Administrators and Editors (on a multisite network, only Super Admins) may paste this "
        "HTML: for Authors and Contributors WordPress removes the script without a warning and the slot stays "
        "empty. Use the plugin's block or shortcode instead."
    ) in text_of(snippet)

    plugin = section(page, "wordpress-plugin")
    assert 'href="/wordpress/affnet.zip"' in plugin
    shortcode = re.search(r'data-testid="shortcode">(.*?)</textarea>', plugin, re.S).group(1)
    assert html.unescape(shortcode) == f'[affnet_slot key="{row["public_key"]}" format="728x90"]'
    words = text_of(plugin)
    assert "“affnet ad slot” block" in words and f"affnet's address, {BASE_URL}," in words
    assert "“Read and write”" in words and 'href="/account/api-keys"' in plugin
    assert words.count("Plugins → Add New → Upload Plugin") == 1


async def test_the_wordpress_advice_is_in_the_publishers_language(app, new_client, settings):
    client, user_id = await publisher_client(new_client, settings)
    await post_form(client, "/publisher/slots/new", slot_form())
    row = await AdSlot.select().where(AdSlot.publisher == user_id).first()
    for language, words in (
        (
            "fr-FR",
            ("Super Admins", "Extensions → Ajouter → Téléverser une extension", "« Emplacement publicitaire affnet »"),
        ),
        ("it-IT", ("Super Admin", "Plugin → Aggiungi nuovo → Carica plugin", "«Spazio pubblicitario affnet»")),
    ):
        page = (await client.get(f"/publisher/slots/{row['id']}", headers={"Accept-Language": language})).text
        shown = text_of(section(page, "html-snippet")) + " " + text_of(section(page, "wordpress-plugin"))
        assert all(w in shown for w in words), (language, shown)
        assert "Administrators" not in shown and "Upload Plugin" not in shown


async def test_anyone_can_download_the_plugin_zip_the_slot_page_links(app, client):
    response = await client.get("/wordpress/affnet.zip")  # no one logged in: GPL code, no secret
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == 'attachment; filename="affnet-wordpress.zip"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert "affnet/affnet.php" in archive.namelist()
