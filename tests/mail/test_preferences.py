"""Choosing one's notifications: the settings page, and the one-click unsubscribe link (RFC 8058)
taken from a real caught mail. A notice turned off is not sent; account mail always is; a forged
link changes nothing; a link scanner's GET changes nothing."""

from __future__ import annotations

import re

from server.accounts import notify
from server.core import clock, db
from server.mail import outbox, unsubscribe
from server.mail.tables import MailOutbox, MailPreference
from tests.conftest import BASE_URL
from tests.factories import login, make_advertiser, make_publisher, post_form
from workers.jobs.mail import deliver_mail


async def deliver() -> None:
    await deliver_mail({"clock": clock.now})


async def caught(mailbox, address: str, kind: str) -> list:
    ids = {r["message_id"] for r in await MailOutbox.select(MailOutbox.message_id).where(MailOutbox.kind == kind)}
    return [m for m in mailbox.catcher.to(address) if m.message_id in ids]


async def invitation(publisher_id: int, n: int = 1) -> int | None:
    """What an advertiser's invitation writes (server/campaigns/notices.py), in its own transaction."""
    async with db.transaction():
        return await notify.send(
            "campaign_invitation",
            publisher_id,
            {
                "campaign_name": f"Secret Sale {n}",
                "advertiser_name": "Shop Ltd",
                "campaign_url": outbox.link(f"/publisher/campaigns#campaign-{n}"),
            },
        )


async def account_mail(user_id: int) -> None:
    async with db.transaction():
        await notify.send("verify_email", user_id, {"verify_url": outbox.link("/verify-email/t0k3n")})


async def enabled(user_id: int, kind: str) -> bool:
    return await outbox.wants(user_id, kind)


def checkbox_kinds(html: str) -> dict[str, bool]:
    return {
        m.group(1): "checked" in m.group(2)
        for m in re.finditer(r'<input type="checkbox" name="kind" value="([a-z_]+)"([^>]*)>', html)
    }


async def test_the_page_lists_the_roles_notices_and_saving_turns_one_off(new_client, settings, mailbox):
    pub_id, pub_email = await make_publisher(settings)
    browser = new_client()
    await login(browser, pub_email)
    page = await browser.get("/account/notifications")
    assert page.status_code == 200
    kinds = checkbox_kinds(page.text)
    assert set(kinds) == {
        "publisher_reviewed",
        "application_decided",
        "campaign_invitation",
        "conversions_digest",
        "payout_sent",
        "payout_problem",
    }
    assert all(kinds.values())  # everything on by default
    assert "An advertiser invited me to a private campaign" in page.text
    assert "Account and security e-mails are always sent" in page.text
    assert 'href="/account/notifications"' in page.text  # the menu's link

    ticked = [k for k in kinds if k != "campaign_invitation"]
    saved = await post_form(browser, "/account/notifications", {"kind": ticked})
    assert saved.status_code == 200 and "Your notification settings are saved." in saved.text
    assert checkbox_kinds(saved.text)["campaign_invitation"] is False
    assert not await enabled(pub_id, "campaign_invitation") and await enabled(pub_id, "payout_sent")

    assert await invitation(pub_id) is None  # turned off: not even written
    await account_mail(pub_id)  # account mail goes whatever the settings
    await deliver()
    assert await caught(mailbox, pub_email, "campaign_invitation") == []
    assert [m for m in await caught(mailbox, pub_email, "verify_email") if "/verify-email/t0k3n" in m.text]

    # Back on from the same page.
    await post_form(browser, "/account/notifications", {"kind": [*ticked, "campaign_invitation"]})
    assert await enabled(pub_id, "campaign_invitation")


async def test_the_page_speaks_the_readers_language_and_needs_a_csrf_token(new_client, mailbox):
    adv_id, adv_email = await make_advertiser()
    browser = new_client()
    await login(browser, adv_email)
    await browser.get("/account/notifications")
    await post_form(browser, "/language", {"language": "fr", "next": "/account/notifications"})
    page = await browser.get("/account/notifications")
    assert set(checkbox_kinds(page.text)) == {"publisher_applied", "balance_low", "review_digest", "invoice_issued"}
    assert (
        "Un éditeur a postulé à l&#39;une de mes campagnes" in page.text
        or "Un éditeur a postulé à l'une de mes campagnes" in page.text
    )
    assert "Les e-mails de compte et de sécurité sont toujours envoyés" in page.text
    forged = await post_form(browser, "/account/notifications", {"kind": []}, with_csrf=False)
    assert forged.status_code == 403
    assert await enabled(adv_id, "publisher_applied")  # nothing changed


async def test_one_click_unsubscribe_from_a_real_mails_header_turns_the_notice_off(new_client, settings, mailbox):
    pub_id, pub_email = await make_publisher(settings)
    await invitation(pub_id)
    await deliver()
    [mail] = await caught(mailbox, pub_email, "campaign_invitation")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(.+)>", str(mail.message["List-Unsubscribe"])).group(1)
    assert url.startswith(BASE_URL + "/unsubscribe/") and url in mail.text and url in mail.html

    # A link scanner (or the reader) opening the link changes nothing: the page asks first.
    scanner = new_client()
    shown = await scanner.get(url)
    assert shown.status_code == 200
    assert "An advertiser invited me to a private campaign" in shown.text and "<form" in shown.text
    assert await enabled(pub_id, "campaign_invitation")

    # The mail client's one-click POST: no cookie, no CSRF token.
    mail_client = new_client()
    assert not mail_client.cookies
    done = await mail_client.post(
        url, content=b"List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert done.status_code == 200, done.text
    assert "You will no longer receive this e-mail" in done.text
    assert not await enabled(pub_id, "campaign_invitation")
    assert await enabled(pub_id, "application_decided")  # only that one kind

    assert await invitation(pub_id, 2) is None
    await account_mail(pub_id)
    await deliver()
    assert len(await caught(mailbox, pub_email, "campaign_invitation")) == 1  # only the first
    assert [m for m in await caught(mailbox, pub_email, "verify_email") if "/verify-email/t0k3n" in m.text]


async def test_a_forged_or_damaged_unsubscribe_link_is_refused_and_changes_nothing(new_client, settings, mailbox):
    pub_id, _ = await make_publisher(settings)
    other_id, _ = await make_publisher(settings)
    good = unsubscribe.token(pub_id, "campaign_invitation")
    client = new_client()
    for bad in (
        good[:-2],  # cut short
        f"{other_id}.campaign_invitation.{good.rsplit('.', 1)[1]}",  # someone else's id, this signature
        f"{pub_id}.verify_email.{good.rsplit('.', 1)[1]}",  # an account mail: never turned off
        f"{pub_id}.no_such_kind.x",
        "garbage",
    ):
        for method in ("GET", "POST"):
            response = await client.request(method, f"/unsubscribe/{bad}")
            assert response.status_code == 404, (bad, method)
            assert "This unsubscribe link is not valid" in response.text
    assert await MailPreference.count() == 0
