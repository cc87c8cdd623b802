"""A request body past its route's limit (a 5 MB file on an upload form) is refused with 413 in words
a person understands: on the site's own page with a way back to the form, or in the API's JSON."""

from __future__ import annotations

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns.tables import Creative
from server.conversions import csv_upload
from server.conversions.tables import Conversion
from tests.campaigns.test_advertiser_campaigns import BASE, create, logged_in_advertiser
from tests.factories import csrf, login, make_advertiser

FIVE_MB = b"txn_id,status\n" + b"x" * (5 * 1024 * 1024)
UPLOAD_PAGE = "http://testserver.local/advertiser/conversions"


async def test_a_5_mb_upload_gets_the_sites_413_page_with_the_limit_and_a_link_back_to_the_form(client):
    _, email = await make_advertiser()
    await login(client, email)
    await client.get("/advertiser/conversions")
    response = await client.post(
        "/advertiser/conversions/upload",
        data={"_csrf_token": csrf(client), "campaign": "1"},
        files={"file": ("statuses.csv", FIVE_MB, "text/csv")},
        headers={"Referer": UPLOAD_PAGE + "?status=pending"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    # The file limit the upload form states ("Up to 1024 KB"), not the request's, which leaves room for the form.
    assert (
        f"The file is larger than the {csv_upload.MAX_BYTES // 1024:,} KB limit; choose a smaller file."
        in response.text
    )
    assert "Request Entity Too Large" not in response.text
    assert 'href="/advertiser/conversions?status=pending" data-testid="back"' in response.text
    assert 'class="topbar"' in response.text  # the site's layout, with its navigation
    assert await Conversion.count() == 0


async def test_a_5_mb_banner_gets_the_413_page_with_the_banner_limit_and_a_link_back_to_the_campaign(client, settings):
    await logged_in_advertiser(client)
    campaign_id = await create(client)
    campaign_page = f"http://testserver.local{BASE}/{campaign_id}"
    response = await client.post(
        f"{BASE}/{campaign_id}/creatives/image",
        data={"name": "Winter banner", "_csrf_token": csrf(client)},
        files={"file": ("banner.png", b"\x89PNG\r\n\x1a\n" + bytes(5 * 1024 * 1024), "image/png")},
        headers={"Referer": campaign_page},
    )
    assert response.status_code == 413
    assert (
        f"The file is larger than the {settings.max_upload_bytes // 1024} KB limit; choose a smaller file."
        in response.text
    )
    assert f'href="{BASE}/{campaign_id}" data-testid="back"' in response.text
    assert await Creative.count() == 0


async def test_a_413_never_links_back_to_another_site(client):
    _, email = await make_advertiser()
    await login(client, email)
    await client.get("/advertiser/conversions")
    response = await client.post(
        "/advertiser/conversions/upload",
        data={"_csrf_token": csrf(client)},
        files={"file": ("statuses.csv", FIVE_MB, "text/csv")},
        headers={"Referer": "https://evil.example/advertiser/conversions"},
    )
    assert response.status_code == 413
    assert "evil.example" not in response.text
    assert 'href="/"' in response.text


async def test_the_413_page_is_in_the_readers_language(client):
    _, email = await make_advertiser()
    await login(client, email)
    await client.get("/advertiser/conversions")
    response = await client.post(
        "/advertiser/conversions/upload",
        data={"_csrf_token": csrf(client)},
        files={"file": ("statuses.csv", FIVE_MB, "text/csv")},
        headers={"Accept-Language": "fr-FR", "Referer": UPLOAD_PAGE},
    )
    assert response.status_code == 413
    assert "Le fichier dépasse la limite de 1\u202f024 Ko ; choisissez un fichier plus petit." in response.text
    assert "Retour au formulaire" in response.text


async def test_a_too_large_api_body_gets_the_apis_json_error(client):
    user_id, email = await make_advertiser()
    user = CurrentUser(id=user_id, email=email, role=Role.advertiser, via="test")
    _, key = await accounts.create_api_key(user, "script")
    response = await client.post(
        "/api/v1/conversions",
        content=b"{" + b" " * 10_000_001 + b"}",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "too_large", "message": "The request body is larger than the 9.5 MB limit."}
    }
