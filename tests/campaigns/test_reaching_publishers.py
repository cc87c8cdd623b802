"""What stands between a campaign and publishers, and what each side is told: funds, creatives,
sub-IDs, pending applications, network figures, and the privacy of publishers' addresses."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import creatives
from server.campaigns import service as campaigns
from server.campaigns.tables import Link, Membership
from server.core import clock
from server.reports.tables import ConversionHour, TrafficCampaignHour
from server.tracking import service as tracking
from tests.campaigns.test_publisher_marketplace import (
    card,
    card_html,
    empty_balance,
    fund,
    listed_ids,
    make_advertiser_user,
    make_campaign,
    membership_of,
    publisher_client,
)
from tests.factories import error_text, login, make_publisher, post_form

BASE = "/advertiser/campaigns"


def text_of(page: str) -> str:
    """A page's words, tags stripped and spaces (narrow, non-breaking) made plain."""
    words = html.unescape(re.sub(r"<[^>]+>", " ", page))
    return re.sub(r"\s+", " ", words.replace("\u202f", " ").replace("\xa0", " "))


async def advertiser_client(new_client, advertiser: CurrentUser):
    client = new_client()
    await login(client, advertiser.email)
    return client


async def applicant(settings, campaign_id: int, name: str) -> CurrentUser:
    pub_id, email = await make_publisher(settings, display_name=name)
    publisher = CurrentUser(id=pub_id, email=email, role=Role.publisher, via="test")
    await campaigns.join(publisher, campaign_id)
    return publisher


# --- 1. a campaign that cannot pay is not offered -------------------------------------------------


async def test_an_unfunded_campaign_is_hidden_and_cannot_be_joined_until_its_advertiser_adds_funds(
    new_client, settings
):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, funded=False)
    client, publisher = await publisher_client(new_client, settings)

    page = (await client.get("/publisher/campaigns")).text
    assert campaign_id not in listed_ids(page)
    refused = await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
    assert refused.status_code == 409
    assert error_text(refused.text) == (
        "This campaign is waiting for its advertiser to add funds: it takes no new publishers until then."
    )
    assert await membership_of(publisher, campaign_id) is None and await Link.count() == 0

    await fund(advertiser.id, 5_000)
    assert campaign_id in listed_ids((await client.get("/publisher/campaigns")).text)
    assert (await post_form(client, f"/publisher/campaigns/{campaign_id}/join")).status_code == 303
    assert (await membership_of(publisher, campaign_id))["status"] == "approved"


async def test_a_balance_in_another_currency_does_not_fund_the_campaign(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, funded=False)
    await fund(advertiser.id, 5_000, "USD")
    client, _ = await publisher_client(new_client, settings)
    assert campaign_id not in listed_ids((await client.get("/publisher/campaigns")).text)


async def test_an_invitation_to_an_unfunded_private_campaign_waits_for_the_funds(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, visibility="private", funded=False)
    client, publisher = await publisher_client(new_client, settings)
    await campaigns.invite(advertiser, campaign_id, publisher.email)

    page = (await client.get("/publisher/campaigns")).text
    assert "Waiting for the advertiser's funds" in card(page, campaign_id)
    assert "<button" not in card_html(page, campaign_id)
    assert (await post_form(client, f"/publisher/campaigns/{campaign_id}/join")).status_code == 409
    assert (await membership_of(publisher, campaign_id))["status"] == "invited"

    other, _ = await publisher_client(new_client, settings)  # not invited: it does not exist for them
    response = await post_form(other, f"/publisher/campaigns/{campaign_id}/join")
    assert response.status_code == 404 and error_text(response.text) == "There is no such campaign."


async def test_publishers_already_in_keep_the_campaign_and_their_link_when_the_balance_runs_out(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser)
    client, publisher = await publisher_client(new_client, settings)
    assert (await post_form(client, f"/publisher/campaigns/{campaign_id}/join")).status_code == 303
    link = await Link.select().where(Link.publisher == publisher.id).first()

    await empty_balance(advertiser.id)

    page = (await client.get("/publisher/campaigns")).text
    assert campaign_id in listed_ids(page)
    mine = card(page, campaign_id)
    assert "Waiting for the advertiser to add funds: your link still works" in mine
    assert "Joined – get your link" in mine
    assert (await client.get(f"/publisher/campaigns/{campaign_id}/link")).status_code == 200
    redirect = await client.get(f"/c/{link['code']}", follow_redirects=False)
    assert redirect.status_code == 302
    assert redirect.headers["location"].startswith("https://shop.example.com/boots")

    newcomer, _ = await publisher_client(new_client, settings)
    assert campaign_id not in listed_ids((await newcomer.get("/publisher/campaigns")).text)


async def test_the_advertiser_is_told_a_campaign_waits_for_funds_and_has_no_creative(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, name="Spring Boots", funded=False)
    client = await advertiser_client(new_client, advertiser)

    page = (await client.get(f"{BASE}/{campaign_id}")).text
    assert 'data-testid="waits-for-funds"' in page and 'data-testid="no-creative"' in page
    assert "This campaign waits for funds: your EUR balance is empty" in text_of(page)
    assert "publishers will see no banner or text link from you" in text_of(page)
    listing = (await client.get(BASE)).text
    assert "Waits for funds: hidden from publishers" in listing and "No creative: publishers will see none." in listing

    await fund(advertiser.id, 5_000)
    await creatives.add_text(advertiser, campaign_id, {"name": "Ad", "text": "Boots for every trail"})
    page = (await client.get(f"{BASE}/{campaign_id}")).text
    assert 'data-testid="reach"' not in page
    listing = (await client.get(BASE)).text
    assert 'data-testid="waits-for-funds"' not in listing and 'data-testid="no-creative"' not in listing


# --- 2. publishers' e-mail addresses stay private ---------------------------------------------------


async def test_advertisers_see_publishers_public_names_and_sites_never_their_email(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, visibility="approval")
    waiting = await applicant(settings, campaign_id, "Hiking Blog")
    member = await applicant(settings, campaign_id, "Cooking Blog")
    [_, row] = await campaigns.applicants(advertiser, campaign_id)
    await campaigns.decide(advertiser, row.id, accept=True)
    link = await Link.select().where(Link.publisher == member.id).first()
    now = clock.now()
    await tracking.write_clicks(
        [
            (
                f"c-{i}",
                now,
                link["id"],
                campaign_id,
                member.id,
                "",
                "",
                "",
                "",
                "",
                "",
                "Chrome",
                "v",
                "valid",
                None,
                "",
            )
            for i in range(2)
        ]
    )
    client = await advertiser_client(new_client, advertiser)

    for path in (f"{BASE}/{campaign_id}", BASE, f"{BASE}/{campaign_id}/edit"):
        page = (await client.get(path)).text
        for publisher in (waiting, member):
            assert publisher.email not in page, path
    page = (await client.get(f"{BASE}/{campaign_id}")).text
    assert "Hiking Blog" in page and "Cooking Blog" in page
    assert 'href="https://blog.affnet.example"' in page
    assert re.search(r"<td>Cooking Blog</td><td>2</td>", page)  # the clicks table names them too
    assert not hasattr(row, "email")  # nor does the service hand it to the page


# --- 3. sub-IDs: what reaches the landing page --------------------------------------------------------


async def test_the_link_builder_says_which_sub_ids_reach_the_landing_page(new_client, settings):
    forwarding = await make_campaign(forward_sub1="on", forward_sub3="on")
    silent = await make_campaign(click_id_param="aff_click")
    client, _ = await publisher_client(new_client, settings)
    for campaign_id in (forwarding, silent):
        assert (await post_form(client, f"/publisher/campaigns/{campaign_id}/join")).status_code == 303

    page = text_of((await client.get(f"/publisher/campaigns/{forwarding}/link")).text)
    assert "This advertiser receives sub1, sub3 on their landing page, under the same names" in page
    assert "The other sub-IDs stay in your statistics." in page
    page = text_of((await client.get(f"/publisher/campaigns/{silent}/link")).text)
    assert "This advertiser receives none of your sub-IDs" in page and "click id (aff_click)" in page


async def test_the_campaign_form_explains_passing_sub_ids_on(new_client):
    advertiser = await make_advertiser_user()
    client = await advertiser_client(new_client, advertiser)
    page = text_of((await client.get(f"{BASE}/new")).text)
    assert "A ticked sub-ID is added to your landing page under its own name" in page
    assert "an unticked one stays in the publisher's statistics and never reaches your site" in page

    campaign_id = await make_campaign(advertiser, forward_sub2="on")
    page = text_of((await client.get(f"{BASE}/{campaign_id}")).text)
    assert "passed on to the landing page under their own names: sub2" in page


# --- 4. what the marketplace tells about a campaign ---------------------------------------------------


async def _traffic(campaign_id: int, publisher_id: int, *, days_ago: int, reason: str, clicks: int) -> None:
    hour = clock.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
    await TrafficCampaignHour.insert(
        TrafficCampaignHour(
            hour=hour, publisher=publisher_id, campaign=campaign_id, currency="EUR", reason=reason, clicks=clicks
        )
    )


async def _conversions(campaign_id: int, publisher_id: int, *, status: str, n: int, payout: int) -> None:
    hour = clock.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    goal = (await campaigns.goals_of(campaign_id))[0]["id"]
    await ConversionHour.insert(
        ConversionHour(
            hour=hour,
            publisher=publisher_id,
            campaign=campaign_id,
            goal=goal,
            currency="EUR",
            status=status,
            conversions=n,
            price_minor=n * 1000,
            payout_minor=n * payout,
            margin_minor=n * (1000 - payout),
        )
    )


async def test_the_marketplace_shows_network_epc_conversion_rate_creatives_and_the_advertiser(new_client, settings):
    advertiser = await make_advertiser_user()
    busy = await make_campaign(advertiser, name="Spring Boots")
    quiet = await make_campaign(advertiser, name="Winter Coats")
    await creatives.add_text(advertiser, busy, {"name": "Ad", "text": "Boots for every trail"})
    pub_id, _ = await make_publisher(settings)
    # The rollups the reports read: 200 valid clicks in 30 days (bots and older hours do not count),
    # 10 approved and 2 pending conversions at €8.00 to the publisher (a rejected one earns nothing).
    await _traffic(busy, pub_id, days_ago=1, reason="valid", clicks=150)
    await _traffic(busy, pub_id, days_ago=20, reason="valid", clicks=50)
    await _traffic(busy, pub_id, days_ago=1, reason="bot", clicks=70)
    await _traffic(busy, pub_id, days_ago=40, reason="valid", clicks=1000)
    await _conversions(busy, pub_id, status="approved", n=10, payout=800)
    await _conversions(busy, pub_id, status="pending", n=2, payout=800)
    await _conversions(busy, pub_id, status="rejected", n=3, payout=800)
    await _traffic(quiet, pub_id, days_ago=1, reason="valid", clicks=99)
    client, _ = await publisher_client(new_client, settings)

    page = (await client.get("/publisher/campaigns")).text
    boots = card(page, busy)
    assert "EPC €0.48 Conversion rate 6%" in boots  # (10 + 2) × €8.00 / 200 clicks; 12 / 200
    assert "Boots for every trail" in boots  # the creative's preview
    assert "By Shop Ltd" in boots and "https://shop.affnet.example" in boots
    assert f"on affnet since {clock.now():%-m/%-d/%Y}" in boots
    coats = card(page, quiet)
    assert "EPC — Conversion rate —" in coats  # 99 clicks are too few to tell
    assert "No creatives" in coats
    assert "shown once a campaign has at least 100 valid clicks" in text_of(page)

    french = (await client.get("/publisher/campaigns", headers={"Accept-Language": "fr-FR"})).text
    assert "0,48 €" in text_of(card(french, busy)) and "6 %" in text_of(card(french, busy))


# --- 5. applications waiting for the advertiser -------------------------------------------------------


async def test_the_advertiser_sees_how_many_publishers_wait_for_an_answer(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, visibility="approval")
    other = await make_campaign(advertiser, visibility="approval")
    client = await advertiser_client(new_client, advertiser)
    assert 'data-testid="waiting-applications"' not in (await client.get(BASE)).text

    for name in ("Hiking Blog", "Cooking Blog"):
        await applicant(settings, campaign_id, name)
    listing = (await client.get(BASE)).text
    row = re.search(rf'data-campaign-id="{campaign_id}".*?</tr>', listing, re.S).group(0)
    assert "2 publishers wait for your answer" in row and f'href="{BASE}/{campaign_id}#publishers"' in row
    assert "wait for your answer" not in re.search(rf'data-campaign-id="{other}".*?</tr>', listing, re.S).group(0)
    assert "2 publishers wait for your answer" in (await client.get(f"{BASE}/{campaign_id}")).text

    first = await Membership.select(Membership.id).where(Membership.campaign == campaign_id).first()
    await campaigns.decide(advertiser, first["id"], accept=True)
    assert "1 publisher waits for your answer" in (await client.get(BASE)).text
    french = (await client.get(BASE, headers={"Accept-Language": "fr-FR"})).text
    assert "1 éditeur attend votre réponse" in french
    italian = (await client.get(BASE, headers={"Accept-Language": "it-IT"})).text
    assert "1 publisher aspetta la tua risposta" in italian and '<span class="badge ok">attiva</span>' in italian


async def test_the_advertisers_dashboard_says_how_many_publishers_wait_and_links_each_campaign(new_client, settings):
    advertiser = await make_advertiser_user()
    boots = await make_campaign(advertiser, visibility="approval", name="Spring Boots")
    coats = await make_campaign(advertiser, visibility="approval", name="Winter Coats")
    quiet = await make_campaign(advertiser, visibility="approval", name="Summer Hats")
    client = await advertiser_client(new_client, advertiser)
    assert 'data-testid="waiting-applications"' not in (await client.get("/advertiser")).text

    for name in ("Hiking Blog", "Cooking Blog"):
        await applicant(settings, boots, name)
    await applicant(settings, coats, "Travel Blog")
    page = (await client.get("/advertiser")).text
    notice = re.search(r'data-testid="waiting-applications".*?</section>', page, re.S).group(0)
    assert "3 publishers wait for your answer" in text_of(notice)
    assert "Spring Boots: 2 applications" in text_of(notice) and "Winter Coats: 1 application" in text_of(notice)
    links = re.findall(r'href="([^"]+)"', notice)
    assert sorted(links) == sorted([f"{BASE}/{boots}#publishers", f"{BASE}/{coats}#publishers"])
    assert f"{BASE}/{quiet}" not in notice

    french = text_of((await client.get("/advertiser", headers={"Accept-Language": "fr-FR"})).text)
    assert "3 éditeurs attendent votre réponse" in french and "Winter Coats : 1 candidature" in french
    italian = text_of((await client.get("/advertiser", headers={"Accept-Language": "it-IT"})).text)
    assert "3 publisher aspettano la tua risposta" in italian and "Spring Boots: 2 candidature" in italian

    for row in await Membership.select(Membership.id).where(Membership.campaign.is_in([boots, coats])):
        await campaigns.decide(advertiser, row["id"], accept=True)
    assert 'data-testid="waiting-applications"' not in (await client.get("/advertiser")).text


async def test_a_campaign_paused_for_its_balance_says_why_in_the_readers_language(new_client):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser)
    assert await campaigns.pause_for_balance(campaign_id)  # as a worker does: in no one's language
    client = await advertiser_client(new_client, advertiser)

    english = text_of((await client.get(f"{BASE}/{campaign_id}")).text)
    assert "Paused by affnet: your balance cannot cover the conversions waiting for approval." in english
    french = text_of((await client.get(f"{BASE}/{campaign_id}", headers={"Accept-Language": "fr-FR"})).text)
    assert "Mise en pause par affnet : votre solde ne couvre pas les conversions en attente d'approbation." in french
