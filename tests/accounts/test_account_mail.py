"""An account's mail over a real SMTP server on loopback: the address is verified by the link sent at
sign-up (approval waits for it), the publisher hears the review, a forgotten password is reset by a
single-use link that answers the same for unknown addresses, a new address is confirmed at the new
one and announced at the old one, a password change is announced, and a throttled owner gets one
unlock link."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from server.accounts.tables import Publisher, Role, User
from server.audit.tables import AuditEvent
from server.core import clock
from server.mail import outbox
from server.mail.tables import MailOutbox, MailToken
from tests.conftest import BASE_URL
from tests.factories import (
    PASSWORD,
    error_text,
    login,
    make_publisher,
    make_staff,
    post_form,
    unique_email,
)

NEW_PASSWORD = "a brand new passphrase"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


def browser(app, ip: str = "203.0.113.7", **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url=BASE_URL, headers=headers
    )


async def delivered(mailbox, address: str) -> list:
    """Deliver what is due, then the messages the SMTP server received for this address."""
    await outbox.deliver_due()
    return mailbox.catcher.to(address)


async def settle(mailbox) -> None:
    """Deliver what earlier steps wrote (the sign-up's verification mail), then empty the mailbox."""
    await outbox.deliver_due()
    mailbox.catcher.clear()


def link(message, path: str) -> str:
    """The path of the first link to BASE_URL + path... in the plain-text part (and the HTML has it too)."""
    match = re.search(re.escape(BASE_URL) + re.escape(path) + r"[A-Za-z0-9_\-]+", message.text)
    assert match, message.text
    assert match.group(0) in message.html
    return match.group(0).removeprefix(BASE_URL)


def visible(html: str) -> str:
    """The page as a person reads it: the CSRF token (hidden, random per browser) taken out."""
    return re.sub(r'name="_csrf_token" value="[^"]*"', "", html)


async def sign_up_publisher(client, email: str):
    return await post_form(
        client,
        "/signup/publisher",
        {
            "email": email,
            "password": PASSWORD,
            "display_name": "Sentiers",
            "blog_url": "https://sentiers.example",
            "audience": "Randonneurs",
        },
    )


async def user_row(email: str) -> dict:
    return await User.select().where(User.email == email).first()


# --- verification at sign-up ---------------------------------------------------------------------


async def test_signup_mails_a_verification_link_in_the_readers_language_that_verifies_once(app, clean, mailbox):
    email = unique_email("blogueur")
    async with browser(app, **{"Accept-Language": "fr-FR,fr;q=0.9"}) as french:
        assert (await sign_up_publisher(french, email)).status_code == 303
        row = await user_row(email)
        assert row["language"] == "fr" and row["email_verified_at"] is None

        [mail] = await delivered(mailbox, email)
        assert mail.subject == "Confirmez votre adresse e-mail pour affnet"
        path = link(mail, "/verify-email/")

        opened = await french.get(path)
        assert opened.status_code == 200
        assert "Votre adresse est confirmée" in opened.text
        verified_at = (await user_row(email))["email_verified_at"]
        assert verified_at is not None
        assert await AuditEvent.count().where(AuditEvent.action == "user.email_verified") == 1

        again = await french.get(path)
        assert again.status_code == 410
        assert "déjà été utilisé" in again.text
        assert (await user_row(email))["email_verified_at"] == verified_at
        assert await AuditEvent.count().where(AuditEvent.action == "user.email_verified") == 1

        unknown = await french.get("/verify-email/not-a-token-we-sent")
        assert unknown.status_code == 404


async def test_an_advertiser_is_mailed_a_verification_link_too(client, mailbox):
    email = unique_email("shop")
    client.headers["Accept-Language"] = "de-CH"  # a language affnet does not speak: mail in English
    form = {"email": email, "password": PASSWORD, "company_name": "Shop", "website": "https://shop.example"}
    assert (await post_form(client, "/signup/advertiser", form)).status_code == 303
    assert (await user_row(email))["language"] == ""  # their pages keep following the browser
    [mail] = await delivered(mailbox, email)
    assert mail.subject == "Confirm your e-mail address for affnet"
    assert (await client.get(link(mail, "/verify-email/"))).status_code == 200
    assert (await user_row(email))["email_verified_at"] is not None


async def test_an_unverified_user_resends_the_link_at_most_once_a_minute(client, mailbox):
    email = unique_email("blogger")
    await sign_up_publisher(client, email)
    page = await client.get("/account")
    assert page.status_code == 200 and 'data-testid="unverified"' in page.text
    assert 'data-testid="unverified-notice"' in (await client.get("/account/password")).text
    assert "Resend the verification e-mail" in page.text

    # Signing up wrote a link this minute: a resend at once is refused, and writes nothing.
    refused = await post_form(client, "/account/verify-email")
    assert refused.status_code == 429 and "less than a minute ago" in error_text(refused.text)
    assert len(await delivered(mailbox, email)) == 1

    await MailToken.update({MailToken.created_at: clock.now() - timedelta(minutes=2)}).where(MailToken.email == email)
    sent = await post_form(client, "/account/verify-email")
    assert sent.status_code == 200 and "We sent a new link" in sent.text
    first, second = await delivered(mailbox, email)
    assert link(first, "/verify-email/") != link(second, "/verify-email/")
    assert (await client.get(link(second, "/verify-email/"))).status_code == 200
    page = await client.get("/account")
    assert 'data-testid="verified"' in page.text and "Resend the verification e-mail" not in page.text
    assert 'data-testid="unverified-notice"' not in (await client.get("/account/password")).text


# --- approval waits for a verified address; the publisher hears the decision ---------------------


async def test_approval_waits_for_a_verified_address_then_mails_a_link_to_the_dashboard(app, clean, mailbox):
    email = unique_email("blogger")
    async with browser(app) as publisher, browser(app, "198.51.100.20") as admin:
        await sign_up_publisher(publisher, email)
        pub_id = (await Publisher.select(Publisher.id).where(Publisher.user.email == email).first())["id"]
        _, admin_email = await make_staff(Role.admin)
        await login(admin, admin_email)

        listing = await admin.get("/admin/publishers")
        assert 'data-testid="address-unverified"' in listing.text
        assert f'action="/admin/publishers/{pub_id}/approve"' not in listing.text

        refused = await post_form(admin, f"/admin/publishers/{pub_id}/approve")
        assert refused.status_code == 409
        assert "has not confirmed their e-mail address" in error_text(refused.text)
        status = await Publisher.select(Publisher.status).where(Publisher.id == pub_id).first()
        assert status["status"] == "pending"

        [verify] = await delivered(mailbox, email)
        assert (await publisher.get(link(verify, "/verify-email/"))).status_code == 200
        listing = await admin.get("/admin/publishers")
        assert 'data-testid="address-verified"' in listing.text

        assert (await post_form(admin, f"/admin/publishers/{pub_id}/approve")).status_code == 303
        _, approval = await delivered(mailbox, email)
        assert approval.subject == "Your affnet publisher account is approved"
        assert f"{BASE_URL}/publisher" in approval.text and f'href="{BASE_URL}/publisher"' in approval.html
        dashboard = await publisher.get("/publisher")
        assert "Your account is approved" in dashboard.text


async def test_rejection_mail_carries_the_reason(client, settings, mailbox):
    user_id, email = await make_publisher(settings, approved=False)
    pub_id = (await Publisher.select(Publisher.id).where(Publisher.user == user_id).first())["id"]
    _, admin_email = await make_staff(Role.admin)
    await login(client, admin_email)
    done = await post_form(client, f"/admin/publishers/{pub_id}/reject", {"reason": "The blog has no posts yet"})
    assert done.status_code == 303
    review = [m for m in await delivered(mailbox, email) if "verify-email" not in m.text]
    assert [m.subject for m in review] == ["Your affnet publisher application was not accepted"]
    assert "The blog has no posts yet" in review[0].text and "The blog has no posts yet" in review[0].html


async def test_with_auto_approval_a_publisher_is_approved_when_they_verify_not_at_signup(app, client, mailbox):
    _, admin_email = await make_staff(Role.admin)
    async with browser(app, "198.51.100.20") as admin:
        await login(admin, admin_email)
        await post_form(admin, "/admin/settings", {"auto_approve": "on"})
    email = unique_email("blogger")
    await sign_up_publisher(client, email)
    profile = Publisher.select(Publisher.status).where(Publisher.user.email == email)
    assert (await profile.first())["status"] == "pending"
    [verify] = await delivered(mailbox, email)
    assert (await client.get(link(verify, "/verify-email/"))).status_code == 200
    assert (await profile.first())["status"] == "approved"
    _, approval = await delivered(mailbox, email)
    assert approval.subject == "Your affnet publisher account is approved"


# --- forgotten password --------------------------------------------------------------------------


async def forgot(client, email: str) -> httpx.Response:
    await client.get("/forgot-password")
    return await post_form(client, "/forgot-password", {"email": email})


async def test_forgot_password_answers_alike_for_known_and_unknown_addresses_and_mails_only_the_known(
    app, clean, settings, mailbox
):
    _, known = await make_publisher(settings)
    await settle(mailbox)
    unknown = unique_email("nobody")
    async with browser(app) as first, browser(app, "198.51.100.20") as second:
        login_page = await first.get("/login")
        assert 'href="/forgot-password"' in login_page.text
        answer_known = await forgot(first, known)
        answer_unknown = await forgot(second, unknown)
    assert answer_known.status_code == answer_unknown.status_code == 200
    assert visible(answer_known.text) == visible(answer_unknown.text)
    assert "If an account uses this address" in answer_known.text
    assert known not in answer_known.text and unknown not in answer_unknown.text

    await outbox.deliver_due()
    assert [m.recipients for m in mailbox.messages] == [[known]]
    [mail] = mailbox.messages
    assert mail.subject == "Choose a new password for affnet"
    assert "/reset-password/" in mail.text


async def test_forgot_password_is_limited_per_address_silently(client, settings, mailbox):
    _, email = await make_publisher(settings)
    await settle(mailbox)
    answers = [await forgot(client, email) for _ in range(7)]
    assert {a.status_code for a in answers} == {200}
    assert len({visible(a.text) for a in answers}) == 1
    assert len(await delivered(mailbox, email)) == 5


async def test_reset_ends_every_session_and_only_the_new_password_works(app, clean, settings, mailbox):
    _, email = await make_publisher(settings)
    async with browser(app, "198.51.100.20") as logged_in, browser(app, **{"User-Agent": FIREFOX}) as owner:
        await login(logged_in, email)
        assert (await logged_in.get("/publisher")).status_code == 200
        # The owner guessed wrong until their own network was locked out of the account.
        for _ in range(settings.login_max_failures_per_account):
            await post_form(owner, "/login", {"email": email, "password": "was it this one"})
        assert (await post_form(owner, "/login", {"email": email, "password": PASSWORD})).status_code == 429
        await forgot(owner, email)
        [mail] = [m for m in await delivered(mailbox, email) if "reset-password" in m.text]
        path = link(mail, "/reset-password/")

        form = await owner.get(path)
        assert form.status_code == 200 and email in form.text and 'name="new_password"' in form.text
        mismatch = await post_form(owner, path, {"new_password": NEW_PASSWORD, "confirm_password": "something else"})
        assert mismatch.status_code == 422 and "do not match" in mismatch.text
        weak = await post_form(owner, path, {"new_password": "short", "confirm_password": "short"})
        assert weak.status_code == 422 and "at least 10 characters" in weak.text

        done = await post_form(owner, path, {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
        assert done.status_code == 200
        assert "Log in with your new password" in done.text

        # The session opened before is over: that browser is sent to log in.
        after = await logged_in.get("/publisher", follow_redirects=False)
        assert after.status_code in (302, 303, 401)
        assert "Log in" in after.text or "/login" in after.headers.get("location", "")

        # The reset lifted the lock: from the same network the old password is wrong, the new one works.
        old = await post_form(owner, "/login", {"email": email, "password": PASSWORD})
        assert old.status_code == 401
        await login(owner, email, NEW_PASSWORD)

    notices = [m for m in await delivered(mailbox, email) if m.subject == "Your affnet password was changed"]
    assert len(notices) == 1 and "Firefox on Windows" in notices[0].text
    assert f"{BASE_URL}/forgot-password" in notices[0].text
    assert await AuditEvent.count().where(AuditEvent.action == "user.password_reset") == 1


async def test_a_used_or_expired_reset_link_gets_a_clear_page_and_changes_nothing(client, settings, mailbox):
    _, email = await make_publisher(settings)
    await forgot(client, email)
    await forgot(client, email)
    first, second = [link(m, "/reset-password/") for m in await delivered(mailbox, email) if "reset-password" in m.text]
    good = {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    assert (await post_form(client, first, good)).status_code == 200
    hash_after = (await user_row(email))["password_hash"]

    # The same link again, and the other link of the same request (retired by the reset).
    for path in (first, second):
        page = await client.get(path)
        assert page.status_code == 410 and "already used" in page.text
        again = await post_form(
            client, path, {"new_password": "yet another passphrase", "confirm_password": "yet another passphrase"}
        )
        assert again.status_code == 410
    assert (await user_row(email))["password_hash"] == hash_after

    # An expired link: the page says so and the password stays.
    await forgot(client, email)
    [third] = [link(m, "/reset-password/") for m in await delivered(mailbox, email) if "reset-password" in m.text][2:]
    await MailToken.update({MailToken.expires_at: clock.now() - timedelta(minutes=1)}).where(
        MailToken.used_at.is_null()
    )
    expired = await client.get(third)
    assert expired.status_code == 410 and "expired" in expired.text and 'href="/forgot-password"' in expired.text
    refused = await post_form(
        client, third, {"new_password": "yet another passphrase", "confirm_password": "yet another passphrase"}
    )
    assert refused.status_code == 410
    assert (await user_row(email))["password_hash"] == hash_after
    assert (await client.get("/reset-password/never-sent")).status_code == 404


# --- "was this you?" after a password change ------------------------------------------------------


async def test_changing_the_password_mails_a_was_this_you_notice(app, clean, settings, mailbox):
    _, email = await make_publisher(settings)
    await settle(mailbox)
    async with browser(app, **{"User-Agent": FIREFOX}) as owner:
        await login(owner, email)
        await owner.get("/account/password")
        changed = await post_form(
            owner,
            "/account/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
        )
        assert changed.status_code == 200
    [notice] = await delivered(mailbox, email)
    assert notice.subject == "Your affnet password was changed"
    assert "from Firefox on Windows" in notice.text and "(UTC)" in notice.text
    assert f"{BASE_URL}/forgot-password" in notice.text and f'href="{BASE_URL}/forgot-password"' in notice.html


# --- changing the address ------------------------------------------------------------------------


async def test_a_new_address_is_confirmed_there_and_announced_at_the_old_one(client, new_client, settings, mailbox):
    _, old = await make_publisher(settings)
    await settle(mailbox)
    new = unique_email("moved")
    await login(client, old)
    await client.get("/account")

    wrong = await post_form(client, "/account/email", {"new_email": new, "current_password": "not my password"})
    assert wrong.status_code == 422 and "current password is not correct" in wrong.text
    asked = await post_form(client, "/account/email", {"new_email": new, "current_password": PASSWORD})
    assert asked.status_code == 200 and f"We sent a link to {new}" in asked.text
    assert (await user_row(old)) is not None and await user_row(new) is None  # nothing changed yet

    [confirm] = await delivered(mailbox, new)
    assert confirm.subject == "Confirm your new e-mail address for affnet"
    path = link(confirm, "/email-change/")
    elsewhere = new_client()  # opened on another device, not logged in
    page = await elsewhere.get(path)
    assert page.status_code == 200 and new in page.text and f'action="{path}"' in page.text
    assert await user_row(new) is None  # looking is not confirming
    done = await post_form(elsewhere, path)
    assert done.status_code == 200 and new in done.text
    row = await user_row(new)
    assert row is not None and row["email_verified_at"] is not None and await user_row(old) is None
    assert (await post_form(elsewhere, path)).status_code == 410

    [notice] = await delivered(mailbox, old)
    assert notice.subject == "The address of your affnet account was changed"
    assert new in notice.text and f"{BASE_URL}/forgot-password" in notice.text
    undo = link(notice, "/email-change/")
    event = await AuditEvent.select(AuditEvent.detail).where(AuditEvent.action == "user.email_changed").first()
    assert old in event["detail"] and new in event["detail"]

    # Whoever holds the account now moves it on again: that does not cancel the old owner's undo link.
    third = unique_email("again")
    holder = new_client()
    await login(holder, new)
    await holder.get("/account")
    await post_form(holder, "/account/email", {"new_email": third, "current_password": PASSWORD})
    [confirm_third] = await delivered(mailbox, third)
    assert (await post_form(holder, link(confirm_third, "/email-change/"))).status_code == 200
    assert (await user_row(third)) is not None

    # The old owner puts their address back with the notice's link.
    back = await post_form(new_client(), undo)
    assert back.status_code == 200
    assert (await user_row(old)) is not None and await user_row(third) is None


async def test_an_address_taken_meanwhile_is_refused_with_409_and_nothing_changes(client, settings, mailbox):
    _, email = await make_publisher(settings)
    target = unique_email("wanted")
    await login(client, email)
    await client.get("/account")
    await post_form(client, "/account/email", {"new_email": target, "current_password": PASSWORD})
    [confirm] = await delivered(mailbox, target)
    await make_publisher(settings, email=target)  # someone signs up with it first
    taken = await post_form(client, link(confirm, "/email-change/"))
    assert taken.status_code == 409 and "took the address" in taken.text
    assert (await user_row(email)) is not None

    already = await post_form(client, "/account/email", {"new_email": target, "current_password": PASSWORD})
    assert already.status_code == 409 and "Another account already uses this address" in already.text


# --- unlocking a throttled account ---------------------------------------------------------------


async def test_a_throttled_login_mails_one_unlock_link_that_lets_the_owner_back_in(client, settings, mailbox):
    _, email = await make_publisher(settings)
    await settle(mailbox)
    unknown = unique_email("nobody")
    for address in (email, unknown):
        for _ in range(settings.login_max_failures_per_account):
            assert (await post_form(client, "/login", {"email": address, "password": "wrong guess"})).status_code == 401
    refusals = [await post_form(client, "/login", {"email": email, "password": "wrong guess"}) for _ in range(3)]
    refusals_unknown = [
        await post_form(client, "/login", {"email": unknown, "password": "wrong guess"}) for _ in range(3)
    ]
    assert {r.status_code for r in refusals + refusals_unknown} == {429}
    # The same answer whether the account exists.
    assert {error_text(r.text) for r in refusals} == {error_text(r.text) for r in refusals_unknown}

    await outbox.deliver_due()
    assert [m.recipients for m in mailbox.messages] == [[email]]  # one mail, not one per attempt
    [mail] = mailbox.messages
    assert mail.subject == "Logins to your affnet account were paused"
    assert await MailOutbox.count().where(MailOutbox.kind == "account_unlock") == 1

    path = link(mail, "/unlock/")
    page = await client.get(path)
    assert page.status_code == 200 and f'action="{path}"' in page.text
    assert (await post_form(client, "/login", {"email": email, "password": PASSWORD})).status_code == 429
    assert (await post_form(client, path)).status_code == 200
    await login(client, email)  # at once, from the very network that was locked out
    assert (await post_form(client, path)).status_code == 410
