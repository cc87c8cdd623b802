"""Publishers find campaigns in the marketplace and join, apply or accept invitations there."""

from __future__ import annotations

import html
import itertools
import re
from typing import Any

import httpx

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Publisher, Role
from server.campaigns import service as campaigns
from server.campaigns.tables import Link, Membership
from server.core.settings import Settings
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind
from tests.factories import error_text, login, make_advertiser, make_publisher, post_form

# --- helpers shared with tests/tracking/test_publisher_links.py -----------------------------------


def campaign_form(**overrides: Any) -> dict[str, str]:
    """The advertiser's campaign form, as parse_terms and parse_goals read it."""
    form = {
        "name": "Spring Boots",
        "description": "Hiking boots for every trail",
        "category": "fashion",
        "currency": "EUR",
        "landing_url": "https://shop.example.com/boots",
        "allowed_domains": "shop.example.com\nblog.shop.example.com",
        "visibility": "public",
        "attribution_window_days": "30",
        "hold_days": "30",
        "goal_0_name": "sale",
        "goal_0_model": "cpa",
        "goal_0_advertiser": "10.00",
        "goal_0_publisher": "8.00",
    }
    form.update({k: str(v) for k, v in overrides.items()})
    return form


async def make_advertiser_user() -> CurrentUser:
    adv_id, adv_email = await make_advertiser()
    return CurrentUser(id=adv_id, email=adv_email, role=Role.advertiser, via="test")


async def fund(advertiser_id: int, amount: int = 100_000, currency: str = "EUR") -> None:
    """The advertiser's balance grows by `amount` (minor units), as a Stripe funding would."""
    n = next(_fundings)
    await postings.fund_advertiser(advertiser_id, amount, currency, reference_id=n, key=f"test-fund-{n}")


async def empty_balance(advertiser_id: int, currency: str = "EUR") -> None:
    """A refund takes the advertiser's whole balance back."""
    held = await ledger.balance(AccountKind.advertiser_balance, currency, advertiser_id)
    n = next(_fundings)
    await postings.withdraw_funding(
        advertiser_id, held, currency, kind="funding.refund", reference_id=n, key=f"test-refund-{n}"
    )


_fundings = itertools.count(1)


async def make_campaign(advertiser: CurrentUser | None = None, *, funded: bool = True, **overrides: Any) -> int:
    """A campaign through the advertiser's form; `funded`: its advertiser has money to pay publishers
    (without, the marketplace hides it)."""
    advertiser = advertiser or await make_advertiser_user()
    campaign_id = await campaigns.create_campaign(advertiser, campaign_form(**overrides))
    if funded:
        await fund(advertiser.id, currency=campaign_form(**overrides)["currency"])
    return campaign_id


async def publisher_client(
    new_client, settings: Settings, *, approved: bool = True
) -> tuple[httpx.AsyncClient, CurrentUser]:
    """A browser logged in as a new publisher, and that publisher."""
    user_id, email = await make_publisher(settings, approved=approved)
    client = new_client()
    await login(client, email)
    return client, CurrentUser(id=user_id, email=email, role=Role.publisher, via="test")


def listed_ids(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-testid="campaign" data-campaign-id="(\d+)"', page)]


def card(page: str, campaign_id: int) -> str:
    """The text of one campaign's card in the marketplace, tags stripped."""
    match = re.search(rf'<article [^>]*id="campaign-{campaign_id}".*?</article>', page, re.S)
    assert match, f"campaign {campaign_id} is not listed"
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(0)))).strip()


def card_html(page: str, campaign_id: int) -> str:
    match = re.search(rf'<article [^>]*id="campaign-{campaign_id}".*?</article>', page, re.S)
    assert match, f"campaign {campaign_id} is not listed"
    return match.group(0)


async def membership_of(publisher: CurrentUser, campaign_id: int) -> dict | None:
    return (
        await Membership.select()
        .where(Membership.publisher == publisher.id, Membership.campaign == campaign_id)
        .first()
    )


async def link_of(publisher: CurrentUser, campaign_id: int) -> dict | None:
    return await Link.select().where(Link.publisher == publisher.id, Link.campaign == campaign_id).first()


# --- the marketplace -------------------------------------------------------------------------------


async def test_marketplace_lists_public_and_approval_campaigns_but_not_private_ones(new_client, settings):
    advertiser = await make_advertiser_user()
    public = await make_campaign(advertiser, name="Spring Boots")
    approval = await make_campaign(
        advertiser,
        name="Winter Coats",
        visibility="approval",
        hold_days="0",
        goal_0_name="lead",
        goal_0_model="cpl",
        goal_0_advertiser="2.00",
        goal_0_publisher="1.20",
        attribution_window_days="7",
    )
    private = await make_campaign(advertiser, name="Secret Sale", visibility="private")
    client, publisher = await publisher_client(new_client, settings)

    page = (await client.get("/publisher/campaigns")).text
    assert sorted(listed_ids(page)) == sorted([public, approval])
    assert "Secret Sale" not in page

    boots = card(page, public)
    assert "Spring Boots" in boots and "Fashion & beauty" in boots and "Hiking boots for every trail" in boots
    assert "Earn €8.00 per sale (sale)" in boots
    assert "Sales count for 30 days after the click. Earnings become available 30 days after approval." in boots
    assert "Open to all approved publishers" in boots
    assert "Join" in boots and f'action="/publisher/campaigns/{public}/join"' in card_html(page, public)

    coats = card(page, approval)
    assert "Earn €1.20 per lead (lead)" in coats
    assert "Leads count for 7 days after the click. Earnings become available as soon as they are approved." in coats
    assert "Needs the advertiser's approval" in coats and "Apply" in coats

    # Invited to the private campaign: now it shows, with the invitation to accept.
    await campaigns.invite(advertiser, private, publisher.email)
    page = (await client.get("/publisher/campaigns")).text
    assert private in listed_ids(page)
    secret = card(page, private)
    assert "By invitation" in secret and "Accept invitation" in secret


async def test_search_model_and_category_filters_narrow_the_list(new_client, settings):
    advertiser = await make_advertiser_user()
    boots = await make_campaign(advertiser, name="Spring Boots", category="fashion")
    flights = await make_campaign(
        advertiser,
        name="Cheap Flights",
        description="Fly to the sun",
        category="travel",
        goal_0_name="click",
        goal_0_model="cpc",
        goal_0_advertiser="0.30",
        goal_0_publisher="0.20",
    )
    bank = await make_campaign(
        advertiser,
        name="Easy Bank",
        description="An account in minutes",
        category="finance",
        goal_0_name="signup",
        goal_0_model="cpl",
        goal_0_advertiser="20.00",
        goal_0_publisher="15.00",
        goal_1_name="sale",
        goal_1_model="revshare",
        goal_1_advertiser="10",
        goal_1_publisher="8",
    )
    client, _ = await publisher_client(new_client, settings)

    async def ids(query: str) -> list[int]:
        response = await client.get(f"/publisher/campaigns?{query}")
        assert response.status_code == 200
        return sorted(listed_ids(response.text))

    assert await ids("") == sorted([boots, flights, bank])
    assert await ids("q=boots") == [boots]
    assert await ids("q=SUN") == [flights]  # the description too, whatever the case
    assert await ids("model=cpc") == [flights]
    assert await ids("model=revshare") == [bank]
    assert await ids("category=travel") == [flights]
    assert await ids("category=finance&model=cpc") == []
    assert await ids("model=nonsense&category=nonsense") == sorted([boots, flights, bank])  # unknown: ignored

    page = (await client.get("/publisher/campaigns?q=boots&model=cpa&category=fashion")).text
    assert 'value="boots"' in page  # the filters stay filled in
    assert '<option value="cpa" selected>' in page and '<option value="fashion" selected>' in page
    empty = (await client.get("/publisher/campaigns?q=zeppelin")).text
    assert "No campaign matches these filters" in empty
    revshare = card((await client.get("/publisher/campaigns?model=revshare")).text, bank)
    assert "Earn €15.00 per lead (signup)" in revshare
    assert "Earn 8% of each sale (sale)" in revshare


# --- joining -----------------------------------------------------------------------------------------


async def test_an_approved_publisher_joins_a_public_campaign_and_gets_a_link(new_client, settings):
    campaign_id = await make_campaign()
    client, publisher = await publisher_client(new_client, settings)
    await client.get("/publisher/campaigns")

    response = await post_form(client, f"/publisher/campaigns/{campaign_id}/join", {"q": "boots"})
    assert response.status_code == 303
    assert response.headers["location"] == f"/publisher/campaigns?q=boots#campaign-{campaign_id}"
    assert (await membership_of(publisher, campaign_id))["status"] == "approved"
    link = await link_of(publisher, campaign_id)
    assert link is not None and link["code"]

    page = (await client.get("/publisher/campaigns")).text
    assert "Joined – get your link" in card(page, campaign_id)
    assert f'href="/publisher/campaigns/{campaign_id}/link"' in card_html(page, campaign_id)
    assert "/join" not in card_html(page, campaign_id)

    again = await post_form(client, f"/publisher/campaigns/{campaign_id}/join")  # a double click changes nothing
    assert again.status_code == 303
    assert await Link.count().where(Link.publisher == publisher.id) == 1


async def test_applying_to_an_approval_campaign_waits_for_the_advertiser(new_client, settings):
    campaign_id = await make_campaign(visibility="approval")
    client, publisher = await publisher_client(new_client, settings)
    assert "Apply" in card((await client.get("/publisher/campaigns")).text, campaign_id)

    response = await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
    assert response.status_code == 303
    assert (await membership_of(publisher, campaign_id))["status"] == "applied"
    assert await link_of(publisher, campaign_id) is None

    page = (await client.get("/publisher/campaigns")).text
    assert "Applied – waiting" in card(page, campaign_id)
    assert "<button" not in card_html(page, campaign_id)


async def test_accepting_an_invitation_to_a_private_campaign_gives_a_link(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, visibility="private")
    client, publisher = await publisher_client(new_client, settings)
    await campaigns.invite(advertiser, campaign_id, publisher.email)
    await client.get("/publisher/campaigns")

    response = await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
    assert response.status_code == 303
    assert (await membership_of(publisher, campaign_id))["status"] == "approved"
    assert await link_of(publisher, campaign_id) is not None


async def test_a_declined_publisher_sees_it_and_cannot_join_again(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, visibility="approval")
    client, publisher = await publisher_client(new_client, settings)
    await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
    await campaigns.decide(advertiser, (await membership_of(publisher, campaign_id))["id"], accept=False)

    page = (await client.get("/publisher/campaigns")).text
    assert "Declined" in card(page, campaign_id) and "<button" not in card_html(page, campaign_id)
    refused = await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
    assert refused.status_code == 409
    assert error_text(refused.text) == "The advertiser has declined your participation in this campaign."
    assert (await membership_of(publisher, campaign_id))["status"] == "declined"


async def test_a_pending_publisher_sees_why_and_is_refused_with_403(new_client, settings):
    campaign_id = await make_campaign()
    client, publisher = await publisher_client(new_client, settings, approved=False)

    page = (await client.get("/publisher/campaigns")).text
    assert 'data-testid="cannot-join"' in page and "waiting for review" in page
    assert campaign_id in listed_ids(page)
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Join</button>", card_html(page, campaign_id))

    refused = await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
    assert refused.status_code == 403
    assert error_text(refused.text).startswith("Your publisher account is not approved yet")
    assert await membership_of(publisher, campaign_id) is None
    assert await link_of(publisher, campaign_id) is None


async def test_joining_what_cannot_be_joined_says_why(new_client, settings):
    advertiser = await make_advertiser_user()
    private = await make_campaign(advertiser, visibility="private")
    ended = await make_campaign(advertiser)
    await campaigns.change_status(advertiser, ended, "end")
    client, publisher = await publisher_client(new_client, settings)
    await client.get("/publisher/campaigns")

    for campaign_id in (private, 999_999):  # not invited, and not there at all, look the same
        response = await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
        assert response.status_code == 404
        assert error_text(response.text) == "There is no such campaign."
    response = await post_form(client, f"/publisher/campaigns/{ended}/join")
    assert response.status_code == 409
    assert error_text(response.text) == "This campaign is not taking new publishers right now."
    assert await Membership.count().where(Membership.publisher == publisher.id) == 0


async def test_joining_needs_the_forms_csrf_token(new_client, settings):
    campaign_id = await make_campaign()
    client, publisher = await publisher_client(new_client, settings)
    response = await post_form(client, f"/publisher/campaigns/{campaign_id}/join", with_csrf=False)
    assert response.status_code == 403
    assert await membership_of(publisher, campaign_id) is None


async def test_a_rejected_publisher_is_told_why_and_cannot_join(new_client, settings):
    campaign_id = await make_campaign()
    client, publisher = await publisher_client(new_client, settings, approved=False)
    row = await Publisher.select(Publisher.id).where(Publisher.user == publisher.id).first()
    admin = CurrentUser(id=None, email="system", role=Role.admin, via="test")  # type: ignore[arg-type]
    await accounts.review_publisher(admin, row["id"], approve=False, reason="The blog has no posts yet")

    page = (await client.get("/publisher/campaigns")).text
    assert "You cannot join campaigns" in page and "The blog has no posts yet" in page
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Join</button>", card_html(page, campaign_id))
    refused = await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
    assert refused.status_code == 403
    assert await membership_of(publisher, campaign_id) is None
