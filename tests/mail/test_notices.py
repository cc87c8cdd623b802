"""The notices of campaigns, funds and conversions, over a real SMTP server on loopback: each reaches
the right person, in their language, with their amounts in their format, once; and an advertiser
never reads a publisher's e-mail address."""

from __future__ import annotations

import itertools
from datetime import timedelta

from server.campaigns.tables import Campaign, Membership
from server.conversions.tables import Conversion
from server.core import clock
from server.ledger import postings
from server.mail.tables import MailOutbox
from tests.conversions.factories import pending_conversions
from tests.factories import login, make_advertiser, make_publisher, post_form
from tests.tracking.factories import campaign_form
from workers.jobs.digests import send_conversions_digests, send_review_digests
from workers.jobs.mail import deliver_mail

SPACES = str.maketrans({"\u00a0": " ", "\u202f": " "})
_fund = itertools.count(1)


def plain(text: str) -> str:
    """The text with the no-break spaces locales put in amounts made ordinary, to compare."""
    return text.translate(SPACES)


async def caught(mailbox, address: str, kind: str) -> list:
    """The mail of this kind caught for this address (others, such as the sign-up's, are left out)."""
    ids = {r["message_id"] for r in await MailOutbox.select(MailOutbox.message_id).where(MailOutbox.kind == kind)}
    return [m for m in mailbox.catcher.to(address) if m.message_id in ids]


async def deliver() -> None:
    await deliver_mail({"clock": clock.now})


async def fund(advertiser_id: int, amount: int, currency: str = "EUR") -> None:
    n = next(_fund)
    await postings.fund_advertiser(advertiser_id, amount, currency, reference_id=n, key=f"notices-fund-{n}")


async def browser(new_client, email: str, *, language: str = ""):
    client = new_client()
    await login(client, email)
    await client.get("/account/notifications")  # a page, so forms carry the session's CSRF token
    if language:
        response = await post_form(client, "/language", {"language": language, "next": "/"})
        assert response.status_code == 303, response.text
    return client


async def campaign_of(new_client, *, visibility: str, language: str = "", **terms):
    """An advertiser (logged in over HTTP, funded) with one campaign of this visibility."""
    adv_id, adv_email = await make_advertiser()
    advertiser = await browser(new_client, adv_email, language=language)
    response = await post_form(advertiser, "/advertiser/campaigns/new", campaign_form(visibility=visibility, **terms))
    assert response.status_code == 303, response.text
    campaign_id = (await Campaign.select(Campaign.id).where(Campaign.advertiser == adv_id).first())["id"]
    await fund(adv_id, 100_00)
    return adv_id, adv_email, advertiser, campaign_id


async def test_a_publisher_applying_tells_the_advertiser_their_public_profile_never_their_address(
    new_client, settings, mailbox
):
    adv_id, adv_email, _, campaign_id = await campaign_of(new_client, visibility="approval", name="Trail Shoes")
    pub_id, pub_email = await make_publisher(settings, display_name="Alpine Kitchen")
    publisher = await browser(new_client, pub_email)
    response = await post_form(publisher, f"/publisher/campaigns/{campaign_id}/join")
    assert response.status_code == 303, response.text
    await deliver()

    [mail] = await caught(mailbox, adv_email, "publisher_applied")
    assert mail.subject == "A publisher applied to Trail Shoes"
    assert "Alpine Kitchen applied to your campaign “Trail Shoes”." in mail.text
    assert "https://blog.affnet.example" in mail.text and "Alpine Kitchen" in mail.html
    # The link stands on its own line in the plain text (a mail client makes it clickable).
    assert (
        f"campaign's page:\nhttp://testserver.local/advertiser/campaigns/{campaign_id}#publishers\n"
        in mail.text.replace("\r\n", "\n")
    )
    assert f"/advertiser/campaigns/{campaign_id}#publishers" in mail.html
    for part in (mail.subject, mail.text, mail.html, mail.raw.decode("utf-8", "replace")):
        assert pub_email not in part  # personal data the advertiser is never shown
    assert await caught(mailbox, pub_email, "application_decided") == []  # applying is not news to the applicant
    assert mail.message["List-Unsubscribe"].startswith("<http://testserver.local/unsubscribe/")


async def test_accepted_and_declined_applications_tell_the_publisher_in_their_language(new_client, settings, mailbox):
    _, _, advertiser, campaign_id = await campaign_of(new_client, visibility="approval", name="Trail Shoes")
    _, yes_email = await make_publisher(settings, display_name="Yes Blog")
    _, no_email = await make_publisher(settings, display_name="No Blog")
    for email, language in ((yes_email, ""), (no_email, "fr")):
        publisher = await browser(new_client, email, language=language)
        assert (await post_form(publisher, f"/publisher/campaigns/{campaign_id}/join")).status_code == 303
    members = await Membership.select(Membership.id, Membership.publisher.email.as_alias("email")).where(
        Membership.campaign == campaign_id
    )
    ids = {m["email"]: m["id"] for m in members}
    await advertiser.get(f"/advertiser/campaigns/{campaign_id}")
    accepted = await post_form(advertiser, f"/advertiser/campaigns/{campaign_id}/members/{ids[yes_email]}/accept")
    declined = await post_form(
        advertiser,
        f"/advertiser/campaigns/{campaign_id}/members/{ids[no_email]}/decline",
        {"note": "Votre audience ne correspond pas."},
    )
    assert accepted.status_code == 303 and declined.status_code == 303, declined.text
    await deliver()

    [yes] = await caught(mailbox, yes_email, "application_decided")
    assert yes.subject == "Your application to Trail Shoes was accepted"
    assert f"http://testserver.local/publisher/campaigns/{campaign_id}/link" in yes.text
    [no] = await caught(mailbox, no_email, "application_decided")
    assert no.subject == "Votre candidature à Trail Shoes a été refusée"
    assert "Votre audience ne correspond pas." in no.text and "Votre audience ne correspond pas." in no.html
    assert 'lang="fr"' in no.html


async def test_an_invitation_to_a_private_campaign_reaches_the_publisher(new_client, settings, mailbox):
    _, adv_email, advertiser, campaign_id = await campaign_of(new_client, visibility="private", name="Secret Sale")
    _, pub_email = await make_publisher(settings)
    await advertiser.get(f"/advertiser/campaigns/{campaign_id}")
    response = await post_form(
        advertiser, f"/advertiser/campaigns/{campaign_id}/invite", {"publisher_email": pub_email}
    )
    assert response.status_code == 303, response.text
    await deliver()
    [mail] = await caught(mailbox, pub_email, "campaign_invitation")
    assert mail.subject == "You are invited to the private campaign Secret Sale"
    assert "Shop Ltd invites you to their private campaign “Secret Sale”." in mail.text
    assert f"http://testserver.local/publisher/campaigns#campaign-{campaign_id}" in mail.text
    assert adv_email not in mail.text


async def test_a_campaign_paused_for_funds_tells_the_advertiser_once_with_the_balance_in_their_format(
    new_client, mailbox
):
    adv_id, adv_email, advertiser, campaign_id = await campaign_of(
        new_client, visibility="public", language="fr", name="Bottes"
    )
    await post_form(
        advertiser, "/advertiser/campaigns/new", campaign_form(visibility="public", name="Chapeaux")
    )  # a second campaign in EUR: both pause, one mail
    # 100.00 in the balance (campaign_of funded it): a threshold above it pauses both campaigns.
    response = await post_form(
        advertiser, "/advertiser/billing/settings", {"currency": "EUR", "auto_pause_threshold": "150"}
    )
    assert response.status_code == 200, response.text
    statuses = {r["status"] for r in await Campaign.select(Campaign.status).where(Campaign.advertiser == adv_id)}
    assert statuses == {"paused"}
    await deliver()
    [mail] = await caught(mailbox, adv_email, "balance_low")
    assert mail.subject.startswith("Votre campagne") and "Bottes" in mail.subject
    assert "100,00 €" in plain(mail.text) and "100,00 €" in plain(mail.html)
    assert "http://testserver.local/advertiser/billing" in mail.text

    # The worker's check finds them paused already: no second mail the same day.
    await post_form(advertiser, "/advertiser/billing/settings", {"currency": "EUR", "auto_pause_threshold": "150"})
    await deliver()
    assert len(await caught(mailbox, adv_email, "balance_low")) == 1


async def test_a_balance_near_the_threshold_warns_once_a_day(new_client, mailbox):
    adv_id, adv_email, advertiser, campaign_id = await campaign_of(new_client, visibility="public", language="it")
    # 100.00 in the balance: above a 60.00 threshold, but under twice it.
    for _ in range(2):  # saved twice (and the worker's check would run every five minutes)
        response = await post_form(
            advertiser, "/advertiser/billing/settings", {"currency": "EUR", "auto_pause_threshold": "60"}
        )
        assert response.status_code == 200, response.text
    assert (await Campaign.select(Campaign.status).where(Campaign.id == campaign_id).first())["status"] == "active"
    await deliver()
    [mail] = await caught(mailbox, adv_email, "balance_low")
    assert "EUR" in mail.subject and 'lang="it"' in mail.html
    assert "100,00 €" in plain(mail.text) and "60,00 €" in plain(mail.text)


# --- digests ----------------------------------------------------------------------------------------


async def conversions_of(settings, client, n: int, *, name: str = "Spring Boots"):
    """n pending CPA conversions (advertiser pays 10.00, publisher earns 8.00), held 30 days, and their ids."""
    setup = await pending_conversions(settings, client, n, name=name)
    ids = [r["id"] for r in await Conversion.select(Conversion.id).where(Conversion.campaign == setup.campaign_id)]
    return setup, sorted(ids)


async def test_digests_with_nothing_to_tell_send_nothing(client, settings, mailbox):
    ctx = {"clock": clock.now}
    assert await send_review_digests(ctx) == 0 and await send_conversions_digests(ctx) == 0
    setup, _ = await conversions_of(settings, client, 1)
    # The advertiser's digest of what waits; the publisher has nothing decided yet.
    assert await send_conversions_digests(ctx) == 0
    await deliver()
    assert await caught(mailbox, setup.publisher_email, "conversions_digest") == []


async def test_the_review_digest_goes_once_a_day_and_only_with_something_new_or_held(client, settings, mailbox):
    setup, ids = await conversions_of(settings, client, 3)
    ctx = {"clock": clock.now}
    assert await send_review_digests(ctx) == 1
    assert await send_review_digests(ctx) == 0  # twice the same day: one mail
    await deliver()
    [mail] = await caught(mailbox, setup.advertiser.email, "review_digest")
    assert mail.subject == "3 conversions wait for your review"
    assert "3 new conversions since the previous digest." in mail.text
    assert "Waiting in all: €30.00" in mail.text
    assert "Spring Boots: 3 pending, 0 held" in mail.text
    assert "http://testserver.local/advertiser/conversions?status=pending" in mail.text
    assert setup.publisher_email not in mail.text + mail.html

    # The next day: nothing new and nothing held, so no reminder of the same conversions.
    tomorrow = clock.now() + timedelta(days=1)
    assert await send_review_digests({"clock": lambda: tomorrow}) == 0


async def test_the_publishers_digest_lists_approved_rejected_and_reversed_with_the_reason(
    client, new_client, settings, mailbox
):
    setup, ids = await conversions_of(settings, client, 3)
    await fund(setup.advertiser.id, 100_00)
    advertiser = await browser(new_client, setup.advertiser.email)
    await advertiser.get("/advertiser/conversions")
    for action, chosen, reason in (
        ("approve", ids[:2], ""),
        ("reject", ids[2:], "Order cancelled by the buyer"),
        ("reverse", ids[1:2], "Refunded: the boots came back"),
    ):
        response = await post_form(
            advertiser,
            "/advertiser/conversions/decide",
            {"conversion_id": [str(i) for i in chosen], "action": action, "reason": reason},
        )
        assert response.status_code in (200, 303), response.text
    statuses = {r["id"]: r["status"] for r in await Conversion.select(Conversion.id, Conversion.status)}
    assert statuses == {ids[0]: "approved", ids[1]: "reversed", ids[2]: "rejected"}
    ctx = {"clock": clock.now}
    assert await send_conversions_digests(ctx) == 1
    assert await send_conversions_digests(ctx) == 0  # twice the same day: one mail
    await deliver()
    [mail] = await caught(mailbox, setup.publisher_email, "conversions_digest")
    assert mail.subject == "Your conversions since the previous digest"
    text = plain(mail.text)
    assert "1 conversion approved: you earn €8.00." in text
    assert "1 conversion rejected (€8.00 not earned)." in text
    assert "1 conversion reversed (€8.00 taken back)." in text
    assert "reason: Order cancelled by the buyer" in text and "reason: Refunded: the boots came back" in text
    assert "reason: Order cancelled by the buyer" in mail.html
    assert "http://testserver.local/publisher/conversions" in text
    assert await MailOutbox.count().where(MailOutbox.kind == "conversions_digest") == 1

    # The next day's digest starts where this one ended: nothing since, nothing sent.
    tomorrow = clock.now() + timedelta(days=1)
    assert await send_conversions_digests({"clock": lambda: tomorrow}) == 0


async def test_held_conversions_are_recalled_every_day_until_the_advertiser_decides(client, settings, mailbox):
    setup, ids = await conversions_of(settings, client, 2)
    assert await send_review_digests({"clock": clock.now}) == 1
    # A fraud rule holds one (as intake does when a rule fires): it waits for the advertiser alone.
    await Conversion.update({Conversion.held: True}).where(Conversion.id == ids[0])
    tomorrow = clock.now() + timedelta(days=1)
    assert await send_review_digests({"clock": lambda: tomorrow}) == 1
    await deliver_mail({"clock": lambda: tomorrow})  # written tomorrow: due tomorrow
    first, second = await caught(mailbox, setup.advertiser.email, "review_digest")
    assert "2 new conversions since the previous digest." in first.text
    assert "1 conversion is held by a fraud rule" in second.text and "new conversion" not in second.text
    assert "http://testserver.local/advertiser/review" in second.text
    assert "Spring Boots: 1 pending, 1 held" in second.text
