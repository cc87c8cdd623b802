"""A form's CSRF token is bound to the login session (issue 14, item 7): a token from one session
does not work for another, a token planted before login does not work after it, and logging
out and in again rotates it. Each refused form changes nothing."""

from __future__ import annotations

import httpx

from server.accounts.tables import User
from tests.factories import PASSWORD, csrf, login, make_advertiser, post_form

ZONE_FORM = "/account/time-zone"


async def _zone(user_id: int) -> str:
    row = await User.select(User.time_zone).where(User.id == user_id).first()
    return row["time_zone"]


async def _set_zone(client: httpx.AsyncClient, token: str, zone: str) -> httpx.Response:
    return await client.post(ZONE_FORM, data={"tz": zone, "_csrf_token": token}, follow_redirects=False)


def _plant(client: httpx.AsyncClient, token: str) -> None:
    """Put a CSRF cookie in a browser, as a sibling subdomain or a plain-http page could."""
    client.cookies.delete("affnet_csrf")
    client.cookies.set("affnet_csrf", token, domain="testserver.local")


def _refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and "This form has expired or did not come from this site" in response.text


async def _logged_in(new_client) -> tuple[httpx.AsyncClient, int]:
    user_id, email = await make_advertiser()
    client = new_client()
    await login(client, email)
    await client.get("/advertiser")  # a page with forms, as a person would have open
    return client, user_id


async def test_a_token_from_one_session_does_not_work_for_another(app, new_client) -> None:
    alice, alice_id = await _logged_in(new_client)
    mallory, _ = await _logged_in(new_client)
    before = await _zone(alice_id)

    # Mallory's own valid token, sent with Alice's session (as a forged form in Alice's browser
    # would, had Mallory planted her CSRF cookie there too).
    _plant(alice, csrf(mallory))
    forged = await _set_zone(alice, csrf(mallory), "Europe/Paris")
    assert _refused(forged), forged.text
    assert await _zone(alice_id) == before

    # Alice's own page still works: the server hands her session's token back.
    await alice.get("/advertiser")
    own = await _set_zone(alice, csrf(alice), "Europe/Paris")
    assert own.status_code == 303, own.text
    assert await _zone(alice_id) == "Europe/Paris"


async def test_a_token_planted_before_login_does_not_work_after_it(app, new_client) -> None:
    attacker = new_client()
    await attacker.get("/login")
    planted = csrf(attacker)  # a valid anonymous token with its cookie: double-submit would take it

    user_id, email = await make_advertiser()
    victim = new_client()
    _plant(victim, planted)
    await login_with(victim, email, planted)  # the login form itself, before any session, takes it
    _plant(victim, planted)  # planted again after login
    forged = await _set_zone(victim, planted, "Asia/Tokyo")
    assert _refused(forged), forged.text
    assert await _zone(user_id) != "Asia/Tokyo"


async def login_with(client: httpx.AsyncClient, email: str, token: str) -> None:
    response = await client.post(
        "/login", data={"email": email, "password": PASSWORD, "_csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


async def test_logout_and_login_rotate_the_token(app, new_client) -> None:
    user_id, email = await make_advertiser()
    client = new_client()
    await login(client, email)
    await client.get("/advertiser")
    first = csrf(client)
    assert first.startswith("s") and first != client.cookies.get("affnet_session")

    logout = await post_form(client, "/logout")
    assert logout.status_code == 303
    after_logout = csrf(client)
    assert after_logout != first

    await login(client, email)
    second = csrf(client)
    assert second not in (first, after_logout)
    stale = await _set_zone(client, first, "America/New_York")  # the token of the session that ended
    assert _refused(stale), stale.text
    assert await _zone(user_id) != "America/New_York"
    fresh = await _set_zone(client, second, "America/New_York")
    assert fresh.status_code == 303, fresh.text
    assert await _zone(user_id) == "America/New_York"


async def test_the_token_cookie_is_http_only_and_forms_render_the_session_token(app, new_client) -> None:
    client, _ = await _logged_in(new_client)
    page = await client.get("/account/api-keys")
    assert f'value="{csrf(client)}"' in page.text
    response = await client.get("/login")  # logged in: redirected home, the cookie stays as it is
    assert "affnet_csrf" not in response.headers.get("set-cookie", "")
    fresh = new_client()
    response = await fresh.get("/login")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("affnet_csrf=") and "HttpOnly" in cookie and "SameSite=lax" in cookie


async def test_a_form_without_a_token_is_refused_and_changes_nothing(app, new_client) -> None:
    client, user_id = await _logged_in(new_client)
    before = await _zone(user_id)
    response = await client.post(ZONE_FORM, data={"tz": "Europe/Rome"}, follow_redirects=False)
    assert _refused(response)
    assert await _zone(user_id) == before
