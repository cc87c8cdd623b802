"""Signing up as a publisher or an advertiser, and every way it can be refused."""

from __future__ import annotations

import pytest

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Advertiser, Publisher, Role, User
from server.core import db
from server.mail import tokens
from server.mail.tables import MailToken, TokenPurpose
from tests.factories import PASSWORD, error_text, make_advertiser, post_form, unique_email

PUBLISHER_FORM = {
    "display_name": "Trail Notes",
    "blog_url": "trailnotes.example.org",
    "audience": "Hikers in the Alps, 15k monthly readers",
}


def publisher_form(**overrides) -> dict[str, str]:
    return {"email": unique_email("blogger"), "password": PASSWORD, **PUBLISHER_FORM, **overrides}


async def test_publisher_signs_up_pending_and_is_told_why_they_cannot_join(client):
    form = publisher_form()
    response = await post_form(client, "/signup/publisher", form)
    assert response.status_code == 303
    assert response.headers["location"] == "/publisher"

    user = await User.select().where(User.email == form["email"]).first()
    assert user["role"] == "publisher"
    profile = await Publisher.select().where(Publisher.user == user["id"]).first()
    assert profile["status"] == "pending"
    assert profile["blog_url"] == "https://trailnotes.example.org"

    page = await client.get("/publisher")  # logged in by the sign-up itself
    assert page.status_code == 200
    assert "waiting for review" in page.text
    assert "cannot join campaigns" in page.text


async def test_auto_approval_setting_approves_new_publishers_once_their_address_is_confirmed(client):
    # Approval needs a confirmed address (issue 20): auto-approval waits for the verification link,
    # tests/accounts/test_account_mail.py opens it; here the address is confirmed without the mail.
    admin = CurrentUser(id=None, email="system", role=Role.admin, via="test")  # type: ignore[arg-type]
    await accounts.set_publisher_auto_approve(admin, True)
    form = publisher_form()
    assert (await post_form(client, "/signup/publisher", form)).status_code == 303
    profile = Publisher.select(Publisher.status).where(Publisher.user.email == form["email"])
    assert (await profile.first())["status"] == "pending"
    token = await MailToken.select(MailToken.id).where(MailToken.email == form["email"]).first()
    assert token is not None  # the verification link went out with the sign-up
    user = await User.select(User.id).where(User.email == form["email"]).first()
    async with db.transaction():
        secret = await tokens.issue(TokenPurpose.verify_email, user["id"], form["email"])
    assert (await client.get(f"/verify-email/{secret}")).status_code == 200
    assert (await profile.first())["status"] == "approved"
    assert "approved" in (await client.get("/publisher")).text


async def test_advertiser_signs_up_and_lands_on_their_dashboard(client):
    form = {
        "email": unique_email("shop"),
        "password": PASSWORD,
        "company_name": "Alpine Gear GmbH",
        "website": "https://alpinegear.example.com",
    }
    response = await post_form(client, "/signup/advertiser", form)
    assert response.status_code == 303
    assert response.headers["location"] == "/advertiser"
    page = await client.get("/advertiser")
    assert page.status_code == 200 and "Alpine Gear GmbH" in page.text
    assert await Advertiser.count() == 1


async def test_duplicate_email_is_refused_with_409_and_changes_nothing(client):
    _, email = await make_advertiser()
    users_before = await User.count()
    response = await post_form(client, "/signup/publisher", publisher_form(email=email.upper()))
    assert response.status_code == 409
    assert "already exists" in error_text(response.text)
    assert await User.count() == users_before
    assert await Publisher.count() == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"password": "short1234"}, "at least 10 characters"),
        ({"email": "not-an-email"}, "email address is not valid"),
        ({"email": "two@@example.com"}, "email address is not valid"),
        ({"email": ""}, "Enter your email address"),
        ({"blog_url": "javascript:alert(1)"}, "web address"),
        ({"blog_url": ""}, "Blog URL is required"),
        ({"display_name": ""}, "Display name is required"),
        ({"audience": "x" * 2001}, "limited to 2000 characters"),
    ],
    ids=[
        "weak-password",
        "malformed-email",
        "double-at",
        "no-email",
        "script-url",
        "no-url",
        "no-name",
        "long-audience",
    ],
)
async def test_bad_signup_input_gets_422_with_a_clear_message_and_changes_nothing(client, overrides, message):
    form = publisher_form(**overrides)
    response = await post_form(client, "/signup/publisher", form)
    assert response.status_code == 422
    assert message in error_text(response.text)
    assert await User.count() == 0
    # The form comes back with what the person typed, minus the password.
    if overrides.get("display_name", "x"):
        assert "Trail Notes" in response.text
    assert PASSWORD not in response.text


async def test_signup_without_csrf_token_is_refused_with_403(client):
    response = await post_form(client, "/signup/publisher", publisher_form(), with_csrf=False)
    assert response.status_code == 403
    assert "did not come from this site" in response.text
    assert await User.count() == 0


async def test_signup_with_a_wrong_csrf_token_is_refused_with_403(client):
    await client.get("/signup/publisher")
    form = {**publisher_form(), "_csrf_token": "0" * 128}
    response = await client.post("/signup/publisher", data=form)
    assert response.status_code == 403
    assert await User.count() == 0


async def test_html_in_profile_fields_is_shown_as_text_never_markup(client, new_client, settings):
    form = publisher_form(display_name='<script>alert("x")</script>', audience="<img src=x onerror=alert(1)>")
    assert (await post_form(client, "/signup/publisher", form)).status_code == 303
    page = (await client.get("/publisher")).text
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;" in page
    assert "<img src=x" not in page


async def test_every_form_page_carries_a_csrf_token(client):
    for path in ["/login", "/signup/publisher", "/signup/advertiser"]:
        page = await client.get(path)
        assert page.status_code == 200
        assert 'name="_csrf_token" value="' in page.text
        assert 'value=""' not in page.text.split('name="_csrf_token"')[1][:10]


async def test_concurrent_signups_with_one_email_create_one_account(new_client):
    import asyncio

    email = unique_email("race")
    clients = [new_client() for _ in range(5)]
    for c in clients:
        await c.get("/signup/advertiser")
    form = {"email": email, "password": PASSWORD, "company_name": "Race Ltd", "website": "https://race.example"}
    responses = await asyncio.gather(
        *[c.post("/signup/advertiser", data={**form, "_csrf_token": c.cookies["affnet_csrf"]}) for c in clients]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [303, 409, 409, 409, 409]
    assert await User.count().where(User.email == email) == 1
    assert await Advertiser.count() == 1
