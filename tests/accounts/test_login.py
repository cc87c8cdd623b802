"""Logging in and out, sessions, throttling and changing passwords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.accounts.tables import Session, User
from tests.factories import PASSWORD, error_text, login, make_publisher, post_form


async def test_login_sets_an_httponly_samesite_session_cookie_and_lands_on_the_dashboard(client, settings):
    _, email = await make_publisher(settings)
    response = await post_form(client, "/login", {"email": email, "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["location"] == "/publisher"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("affnet_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie  # plain http in development
    assert (await client.get("/publisher")).status_code == 200


async def test_session_cookie_is_secure_when_served_over_https(new_client, settings):
    _, email = await make_publisher(settings)
    client = new_client("https://affnet.example")
    response = await post_form(client, "/login", {"email": email, "password": PASSWORD})
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


async def test_only_a_hash_of_the_session_token_is_stored(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    token = client.cookies["affnet_session"]
    rows = await Session.select()
    assert len(rows) == 1
    assert token not in str(rows)


async def test_wrong_password_gets_401_and_no_session(client, settings):
    _, email = await make_publisher(settings)
    response = await post_form(client, "/login", {"email": email, "password": "not the password"})
    assert response.status_code == 401
    assert "do not match" in error_text(response.text)
    assert "affnet_session" not in response.headers.get("set-cookie", "")
    assert await Session.count() == 0


async def test_unknown_email_gets_the_same_answer_as_a_wrong_password(client):
    response = await post_form(client, "/login", {"email": "nobody@affnet.example", "password": PASSWORD})
    assert response.status_code == 401
    assert "do not match" in error_text(response.text)


# Throttling (concurrency, per network, Redis away): tests/accounts/test_login_throttle.py


async def test_a_successful_login_clears_the_account_failures(client, settings):
    _, email = await make_publisher(settings)
    for _ in range(settings.login_max_failures_per_account - 1):
        await post_form(client, "/login", {"email": email, "password": "wrong password"})
    await login(client, email)
    # After success, the account gets its full allowance of mistakes again.
    for _ in range(settings.login_max_failures_per_account - 1):
        assert (await post_form(client, "/login", {"email": email, "password": "wrong"})).status_code == 401
    assert (await post_form(client, "/login", {"email": email, "password": PASSWORD})).status_code == 303


async def test_logout_ends_the_session_on_the_server(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    token = client.cookies["affnet_session"]
    response = await post_form(client, "/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert await Session.count() == 0
    client.cookies.set("affnet_session", token)  # replaying the old cookie does not work
    page = await client.get("/publisher")
    assert page.status_code == 401
    assert "Please log in" in page.text


async def test_expired_session_is_refused_with_a_clear_message(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    await Session.update({Session.expires_at: datetime.now(UTC) - timedelta(seconds=1)}, force=True)
    page = await client.get("/publisher")
    assert page.status_code == 401
    assert "Your session has expired" in error_text(page.text)
    assert 'name="next" value="/publisher"' in page.text


async def test_login_redirects_back_to_a_local_next_path_only(client, settings):
    _, email = await make_publisher(settings)
    ok = await post_form(client, "/login", {"email": email, "password": PASSWORD, "next": "/account/password"})
    assert ok.headers["location"] == "/account/password"
    for hostile in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:x=1",
    ]:
        response = await post_form(client, "/login", {"email": email, "password": PASSWORD, "next": hostile})
        location = response.headers["location"]
        assert location.startswith("/") and not location.startswith("//"), (hostile, location)
        assert "evil" not in location or location.startswith("/%0d"), (hostile, location)
        assert "\r" not in location and "\n" not in location


async def test_passwords_are_stored_as_argon2id_hashes(settings):
    _, email = await make_publisher(settings)
    row = await User.select(User.password_hash).where(User.email == email).first()
    assert row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"]


async def test_change_password_keeps_this_session_and_ends_the_others(client, new_client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    elsewhere = new_client()
    await login(elsewhere, email)
    assert await Session.count() == 2

    new_password = "a much better passphrase"
    response = await post_form(
        client,
        "/account/password",
        {"current_password": PASSWORD, "new_password": new_password, "confirm_password": new_password},
    )
    assert response.status_code == 200
    assert "Your password has been changed" in response.text
    assert (await client.get("/publisher")).status_code == 200
    assert (await elsewhere.get("/publisher")).status_code == 401
    assert await Session.count() == 1

    fresh = new_client()
    assert (await post_form(fresh, "/login", {"email": email, "password": PASSWORD})).status_code == 401
    await login(fresh, email, new_password)


async def test_change_password_refusals_change_nothing(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    before = (await User.select(User.password_hash).where(User.email == email).first())["password_hash"]
    cases = [
        (
            {"current_password": "wrong one!!", "new_password": "long enough pw", "confirm_password": "long enough pw"},
            "current password is not correct",
        ),
        ({"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"}, "at least 10"),
        (
            {"current_password": PASSWORD, "new_password": "long enough pw", "confirm_password": "different pw!"},
            "do not match",
        ),
        ({"current_password": PASSWORD, "new_password": PASSWORD, "confirm_password": PASSWORD}, "different from"),
    ]
    for form, message in cases:
        response = await post_form(client, "/account/password", form)
        assert response.status_code == 422, form
        assert message in error_text(response.text), (form, response.text)
    after = (await User.select(User.password_hash).where(User.email == email).first())["password_hash"]
    assert after == before
