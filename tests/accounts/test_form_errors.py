"""A form with several mistakes says every one of them at once: beside its field, and listed at the top."""

from __future__ import annotations

import re

import msgspec
from litestar import Request

from server.accounts.tables import Advertiser, Publisher, User
from server.core.errors import Invalid
from server.http.web import handle_domain_error
from tests.factories import PASSWORD, login, make_publisher, post_form


def field_errors(html: str) -> dict[str, str]:
    """What the page writes under each field (partials/field.html), by field name."""
    found = re.findall(r'data-field-error="([^"]+)">(.*?)</strong>', html, re.S)
    return {name: " ".join(text.split()) for name, text in found}


def summary_items(html: str) -> list[str]:
    match = re.search(r'data-testid="error-summary">(.*?)</div>', html, re.S)
    assert match, "no error summary on the page"
    return [re.sub(r"<[^>]+>", "", item).strip() for item in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)]


async def test_publisher_signup_with_three_bad_fields_shows_all_three_errors_and_creates_nothing(client):
    form = {
        "email": "not-an-email",
        "password": "short",
        "display_name": "Trail Notes",
        "blog_url": "javascript:alert(1)",
        "audience": "Hikers",
    }
    response = await post_form(client, "/signup/publisher", form)
    assert response.status_code == 422
    errors = field_errors(response.text)
    assert set(errors) == {"email", "password", "blog_url"}
    assert "email address is not valid" in errors["email"]
    assert "at least 10 characters" in errors["password"]
    assert "web address" in errors["blog_url"]
    assert sorted(summary_items(response.text)) == sorted(errors.values())
    assert "Trail Notes" in response.text  # what was typed comes back
    assert await User.count() == 0 and await Publisher.count() == 0


async def test_advertiser_signup_with_every_field_wrong_shows_each_error_beside_its_field(client):
    form = {"email": "", "password": "", "company_name": "", "website": "not a site"}
    response = await post_form(client, "/signup/advertiser", form)
    assert response.status_code == 422
    errors = field_errors(response.text)
    assert errors == {
        "email": "Enter your email address.",
        "password": "Choose a password of at least 10 characters.",
        "company_name": "Company name is required.",
        "website": "Website must be a web address such as https://example.com.",
    }
    assert len(summary_items(response.text)) == 4
    assert await User.count() == 0 and await Advertiser.count() == 0


async def test_a_single_mistake_is_shown_beside_its_field_without_a_list(client):
    form = {"email": "shop@affnet.example", "password": PASSWORD, "company_name": "Shop", "website": ""}
    response = await post_form(client, "/signup/advertiser", form)
    assert response.status_code == 422
    assert field_errors(response.text) == {"website": "Website is required."}
    assert 'data-testid="error-summary"' not in response.text
    assert 'aria-describedby="website-error"' in response.text


async def test_login_with_both_fields_empty_asks_for_each(client):
    response = await post_form(client, "/login", {"email": "", "password": ""})
    assert response.status_code == 422
    assert field_errors(response.text) == {
        "email": "Enter your email address.",
        "password": "Enter your password.",
    }


async def test_password_change_with_three_mistakes_names_all_three_and_keeps_the_old_password(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    await client.get("/account/password")
    form = {"current_password": "wrong one!", "new_password": "short", "confirm_password": "different"}
    response = await post_form(client, "/account/password", form)
    assert response.status_code == 422
    assert field_errors(response.text) == {
        "current_password": "Your current password is not correct.",
        "new_password": "Choose a password of at least 10 characters.",
        "confirm_password": "The two new passwords do not match.",
    }
    await client.post("/logout", data={"_csrf_token": client.cookies["affnet_csrf"]})
    await login(client, email, PASSWORD)  # unchanged


async def test_form_errors_come_in_the_readers_language(client):
    form = {"email": "", "password": "", "company_name": "", "website": ""}
    await client.get("/signup/advertiser", headers={"Accept-Language": "fr-FR"})
    response = await client.post(
        "/signup/advertiser",
        data={**form, "_csrf_token": client.cookies["affnet_csrf"]},
        headers={"Accept-Language": "fr-FR"},
    )
    assert response.status_code == 422
    errors = field_errors(response.text)
    assert errors["email"] == "Saisissez votre adresse e-mail."
    assert "Nom de l’entreprise" in errors["company_name"]
    assert "4 points à corriger" in response.text


def test_the_json_api_still_answers_one_error_when_a_form_found_several():
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "server": ("affnet.example", 80),
            "path": "/api/v1/anything",
            "root_path": "",
            "query_string": b"",
            "headers": [],
        }
    )
    several = Invalid.of([Invalid("Name is required.", field="name"), Invalid("Too long.", field="text")])
    response = handle_domain_error(request, several)
    assert response.status_code == 422
    body = msgspec.to_builtins(response.content)
    assert body == {"error": {"code": "invalid", "message": "Name is required.", "field": "name"}}


async def test_a_refused_form_token_is_explained_in_the_readers_language(client):
    """The CSRF check runs in a middleware, before any handler: its page is still in French."""
    await client.get("/signup/advertiser", headers={"Accept-Language": "fr-FR"})
    response = await client.post(
        "/signup/advertiser",
        data={"email": "shop@affnet.example", "_csrf_token": "0" * 64},
        headers={"Accept-Language": "fr-FR"},
    )
    assert response.status_code == 403
    assert '<html lang="fr">' in response.text
    assert "Ce formulaire a expiré ou ne provient pas de ce site." in response.text
    assert await User.count() == 0


async def test_a_page_of_another_role_says_who_it_is_for_in_the_readers_language(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    response = await client.get("/admin/settings", headers={"Accept-Language": "it-IT"})
    assert response.status_code == 403
    assert "Questa pagina è per gli amministratori; hai effettuato l’accesso come publisher." in response.text


async def test_an_address_with_no_page_is_explained_in_the_readers_language(client):
    """No route, so no middleware ran: the 404 page still follows the browser's language."""
    response = await client.get("/no/such/page", headers={"Accept-Language": "fr-FR"})
    assert response.status_code == 404
    assert '<html lang="fr">' in response.text
    assert "<h1>Introuvable</h1>" in response.text and "rien à cette adresse." in response.text
    wrong_method = await client.delete("/login", headers={"Accept-Language": "it-IT"})
    assert wrong_method.status_code == 405 and "allow" in wrong_method.headers
    assert "Questo indirizzo non accetta questo tipo di richiesta." in wrong_method.text
