"""The language a person reads affnet in: the browser's Accept-Language, else English; the footer's
switcher overrides it (a cookie before login, the account after), and amounts follow it."""

from __future__ import annotations

from server.accounts.tables import User
from tests.factories import login, make_publisher, post_form


async def test_the_browser_language_is_used_until_one_is_chosen(client):
    page = await client.get("/login", headers={"Accept-Language": "it-IT,it;q=0.9,en;q=0.5"})
    assert '<html lang="it">' in page.text
    assert "Lingua" in page.text
    english = await client.get("/login")
    assert '<html lang="en">' in english.text


async def test_a_visitor_choice_is_kept_in_a_cookie_and_beats_the_browser(client):
    await client.get("/login")
    answer = await post_form(client, "/language", {"language": "fr", "next": "/signup"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signup"
    assert client.cookies.get("affnet_lang") == "fr"
    page = await client.get("/signup", headers={"Accept-Language": "it-IT"})
    assert '<html lang="fr">' in page.text
    assert "Langue" in page.text


async def test_a_logged_in_choice_is_saved_on_the_account(client, settings, new_client):
    user_id, email = await make_publisher(settings)
    await login(client, email)
    await post_form(client, "/language", {"language": "it", "next": "/publisher"})
    assert (await User.select(User.language).where(User.id == user_id).first())["language"] == "it"
    other = new_client()  # another browser, no cookie: the account's choice still holds
    await login(other, email)
    page = await other.get("/publisher", headers={"Accept-Language": "fr-FR"})
    assert '<html lang="it">' in page.text


async def test_an_unknown_language_or_a_foreign_return_path_is_refused(client):
    await client.get("/login")
    answer = await post_form(client, "/language", {"language": "xx", "next": "/login"})
    assert answer.status_code == 422
    assert "English, French or Italian" in answer.text
    assert client.cookies.get("affnet_lang") is None
    answer = await post_form(client, "/language", {"language": "fr", "next": "https://evil.example/"})
    assert answer.headers["location"] == "/"
