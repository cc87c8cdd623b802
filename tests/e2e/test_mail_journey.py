"""A French blogger on a phone signs up, opens the verification link from the mail they were sent,
is approved by an admin, and follows the approval mail's link to their dashboard: headless Chromium
against the real server, the mail through a real SMTP server on loopback."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from server.accounts.tables import Publisher, PublisherStatus, Role, User
from server.mail import outbox
from tests.e2e.pages import log_in
from tests.factories import PASSWORD, make_staff, unique_email

PHONE = {"width": 390, "height": 844}


def _link(text: str, base: str, path: str) -> str:
    found = re.search(rf"{re.escape(base)}{re.escape(path)}\S*", text)
    assert found, f"no {path} link in:\n{text}"
    return found.group(0)


async def _one_mail_to(mailbox, email: str):
    await outbox.deliver_due()
    mails = mailbox.catcher.to(email)
    assert len(mails) == 1, [m.subject for m in mails]
    mailbox.catcher.clear()
    return mails[0]


@pytest.mark.browser
async def test_a_blogger_verifies_their_address_from_the_mail_and_reads_the_approval_mail(
    live_server, browser, new_page, mailbox
):
    base = live_server.url
    _, admin_email = await make_staff(Role.admin)
    email = unique_email("blogueuse")

    context = await browser.new_context(base_url=base, locale="fr-FR", viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        blogger = await context.new_page()
        await blogger.goto("/signup/publisher")
        await expect(blogger.locator("html")).to_have_attribute("lang", re.compile("^fr"))
        await blogger.fill("input[name=email]", email)
        await blogger.fill("input[name=password]", PASSWORD)
        await blogger.fill("input[name=display_name]", "Cuisine de Léa")
        await blogger.fill("input[name=blog_url]", "https://cuisine-de-lea.example")
        await blogger.fill("textarea[name=audience]", "Recettes de saison, 8 000 lectrices par mois")
        await blogger.click("main form button[type=submit]")
        await blogger.wait_for_url(f"{base}/publisher")

        # The verification mail, in French, with a link back to this server.
        verification = await _one_mail_to(mailbox, email)
        assert verification.subject == "Confirmez votre adresse e-mail pour affnet"
        assert "<img" not in verification.html
        link = _link(verification.text, base, "/verify-email/")
        assert link in verification.html
        response = await blogger.goto(link)
        assert response is not None and response.status == 200
        user = await User.select(User.email_verified_at).where(User.email == email).first()
        assert user["email_verified_at"] is not None

        # An admin approves the verified blogger.
        admin = await new_page()
        await log_in(admin, admin_email)
        await admin.goto("/admin/publishers")
        row = admin.locator(f'tr[data-publisher="{email}"]')
        await row.get_by_role("button", name="Approve").click()
        await admin.wait_for_url(f"{base}/admin/publishers")
        status = await Publisher.select(Publisher.status).where(Publisher.user.email == email).first()
        assert status["status"] == PublisherStatus.approved.value

        # The approval mail, in French, leads to the dashboard, which says the account is approved.
        approval = await _one_mail_to(mailbox, email)
        assert "affnet" in approval.subject and approval.subject != verification.subject
        assert approval.message["List-Unsubscribe"]  # a notification: one click turns it off
        dashboard = _link(approval.text, base, "/publisher")
        await blogger.goto(dashboard)
        await blogger.wait_for_url(f"{base}/publisher")
        await expect(blogger.get_by_test_id("publisher-status")).to_be_visible()
        await expect(blogger.locator("html")).to_have_attribute("lang", re.compile("^fr"))
        wide = await blogger.evaluate("document.documentElement.scrollWidth")
        assert wide <= PHONE["width"], "the dashboard runs past a phone's screen"
    finally:
        await context.close()
