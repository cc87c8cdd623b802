"""Advertisers' campaign pages: creating, editing and stopping campaigns, clear refusals of bad
terms, the default margin, owner-only access, and deciding on publishers who apply."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.campaigns import creatives
from server.campaigns import service as campaigns
from server.campaigns.tables import Campaign, Creative, Goal, Link, Membership
from server.tracking import service as tracking
from tests.factories import error_text, login, make_advertiser, make_publisher, post_form

BASE = "/advertiser/campaigns"


def campaign_form(**changes: Any) -> dict[str, str]:
    """What an advertiser types into the new-campaign form (a None value leaves a field out)."""
    form = {
        "name": "Winter boots",
        "description": "Warm boots for cold feet.",
        "category": "fashion",
        "currency": "EUR",
        "allowed_domains": "shop.affnet.example\nboots.affnet.example",
        "landing_url": "https://shop.affnet.example/boots",
        "fallback_url": "",
        "total_budget": "5000.00",
        "daily_budget": "250.00",
        "cap_clicks_daily": "1000",
        "attribution_window_days": "30",
        "hold_days": "14",
        "min_conversion_seconds": "0",
        "visibility": "public",
        "click_id_param": "click_id",
        "forward_sub1": "on",
        "forward_sub3": "on",
        "goal_0_name": "sale",
        "goal_0_model": "cpa",
        "goal_0_advertiser": "10.00",
        "goal_0_publisher": "",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def as_user(user_id: int, email: str, role: Role = Role.advertiser) -> CurrentUser:
    return CurrentUser(id=user_id, email=email, role=role, via="session")


async def logged_in_advertiser(client) -> CurrentUser:
    user_id, email = await make_advertiser()
    await login(client, email)
    return as_user(user_id, email)


async def create(client, **changes: Any) -> int:
    response = await post_form(client, f"{BASE}/new", campaign_form(**changes))
    assert response.status_code == 303, error_text(response.text) or response.text[:500]
    match = re.fullmatch(rf"{BASE}/(\d+)\?saved=1", response.headers["location"])  # saved=1: amounts echoed
    assert match, response.headers["location"]
    return int(match.group(1))


def shown_error(response) -> str:
    return html.unescape(error_text(response.text))


def marked_invalid(page: str, field: str) -> bool:
    """Whether the form marks this field as the one to fix (on the input, or on its label)."""
    at = page.index(f'name="{field}"')
    tag = page[page.rfind("<", 0, at) : page.index(">", at)]
    if 'class="invalid"' in tag:
        return True
    label = page.rfind('<label class="field', 0, at)
    return label != -1 and page.startswith('<label class="field invalid"', label)


async def test_advertiser_creates_a_campaign_through_the_form_and_sees_it(client):
    await logged_in_advertiser(client)
    page = await client.get(f"{BASE}/new")
    assert page.status_code == 200
    assert 'name="goal_0_name" value="sale"' in page.text  # one goal prefilled
    assert 'name="currency" value="EUR"' in page.text
    assert "20&nbsp;% margin" in page.text

    campaign_id = await create(client)

    row = await Campaign.select().where(Campaign.id == campaign_id).first()
    assert row["name"] == "Winter boots" and row["status"] == "active" and row["currency"] == "EUR"
    assert row["total_budget_minor"] == 500_000 and row["daily_budget_minor"] == 25_000
    assert row["cap_clicks_daily"] == 1000 and row["cap_conversions_daily"] is None
    assert row["allowed_domains"] == "shop.affnet.example\nboots.affnet.example"
    assert row["forward_subs"] == "sub1,sub3" and row["hold_days"] == 14
    goals = await Goal.select().where(Goal.campaign == campaign_id)
    assert [(g["name"], g["payout_model"], g["advertiser_amount"], g["publisher_amount"]) for g in goals] == [
        ("sale", "cpa", 1000, 800)
    ]
    assert await AuditEvent.exists().where(AuditEvent.action == "campaign.created", AuditEvent.object_id == campaign_id)

    shown = await client.get(f"{BASE}/{campaign_id}")
    assert shown.status_code == 200
    text = html.unescape(shown.text)
    assert "Pay €10.00 per sale (sale)" in text
    assert "publishers: Earn €8.00 per sale (sale)" in text
    assert "<dt>Total budget</dt><dd>€5,000.00</dd>" in text and "<dt>Daily budget</dt><dd>€250.00</dd>" in text

    listing = await client.get(BASE)
    assert listing.status_code == 200
    assert f'href="{BASE}/{campaign_id}">Winter boots</a>' in listing.text
    assert 'href="/advertiser/campaigns/new"' in listing.text


async def test_advertiser_edits_a_campaign_and_the_currency_stays(client):
    await logged_in_advertiser(client)
    campaign_id = await create(
        client, goal_1_name="share", goal_1_model="revshare", goal_1_advertiser="12.5", goal_1_publisher="10"
    )

    page = await client.get(f"{BASE}/{campaign_id}/edit")
    assert page.status_code == 200
    for name, value in (
        ("goal_0_advertiser", "10.00"),
        ("goal_0_publisher", "8.00"),
        ("goal_1_advertiser", "12.5"),
        ("goal_1_publisher", "10"),
        ("total_budget", "5000.00"),
        ("daily_budget", "250.00"),
        ("cap_clicks_daily", "1000"),
        ("name", "Winter boots"),
    ):
        assert re.search(rf'name="{name}" value="{re.escape(value)}"', page.text), name
    assert 'name="currency"' not in page.text  # shown, not editable
    assert "<strong>EUR</strong>" in page.text
    assert re.search(r'name="forward_sub1" checked', page.text) and not re.search(
        r'name="forward_sub2" checked', page.text
    )

    changed = campaign_form(
        name="Winter boots, now warmer",
        currency="USD",
        goal_0_advertiser="12.00",
        goal_0_publisher="9.50",
        goal_1_name="share",
        goal_1_model="revshare",
        goal_1_advertiser="12.5",
        goal_1_publisher="10",
        goal_2_name="lead",
        goal_2_model="cpl",
        goal_2_advertiser="2.00",
        daily_budget="",
        visibility="approval",
    )
    response = await post_form(client, f"{BASE}/{campaign_id}/edit", changed)
    assert response.status_code == 303 and response.headers["location"] == f"{BASE}/{campaign_id}?saved=1"

    row = await Campaign.select().where(Campaign.id == campaign_id).first()
    assert row["name"] == "Winter boots, now warmer" and row["visibility"] == "approval"
    assert row["currency"] == "EUR"  # the currency of a campaign never changes
    assert row["daily_budget_minor"] is None
    goals = await Goal.select().where(Goal.campaign == campaign_id).order_by(Goal.position)
    assert [(g["name"], g["advertiser_amount"], g["publisher_amount"]) for g in goals] == [
        ("sale", 1200, 950),
        ("share", 1250, 1000),
        ("lead", 200, 160),
    ]

    # A bad edit is refused with the typed values kept, and changes nothing.
    bad = {**changed, "name": "Renamed", "goal_0_publisher": "13.00"}
    refused = await post_form(client, f"{BASE}/{campaign_id}/edit", bad)
    assert refused.status_code == 422
    assert "cannot be more than what the advertiser pays" in shown_error(refused)
    assert 'name="name" value="Renamed"' in refused.text
    assert (await Campaign.select(Campaign.name).where(Campaign.id == campaign_id).first())["name"] == (
        "Winter boots, now warmer"
    )


async def test_pause_resume_and_end_and_an_ended_campaign_stays_ended(client):
    await logged_in_advertiser(client)
    campaign_id = await create(client)

    async def status() -> str:
        return (await Campaign.select(Campaign.status).where(Campaign.id == campaign_id).first())["status"]

    response = await post_form(client, f"{BASE}/{campaign_id}/pause")
    assert response.status_code == 303 and await status() == "paused"
    page = await client.get(f"{BASE}/{campaign_id}")
    assert f'action="{BASE}/{campaign_id}/resume"' in page.text
    assert f'action="{BASE}/{campaign_id}/pause"' not in page.text

    response = await post_form(client, f"{BASE}/{campaign_id}/resume")
    assert response.status_code == 303 and await status() == "active"

    unconfirmed = await post_form(client, f"{BASE}/{campaign_id}/end")
    assert unconfirmed.status_code == 422
    assert "I understand this cannot be undone" in shown_error(unconfirmed)
    assert await status() == "active"

    response = await post_form(client, f"{BASE}/{campaign_id}/end", {"confirm": "on"})
    assert response.status_code == 303 and await status() == "ended"

    again = await post_form(client, f"{BASE}/{campaign_id}/resume")
    assert again.status_code == 409
    assert shown_error(again) == "A campaign that is ended cannot resume."
    assert await status() == "ended"

    edit = await post_form(client, f"{BASE}/{campaign_id}/edit", campaign_form(name="Back again"))
    assert edit.status_code == 409
    assert "has ended and can no longer be edited" in shown_error(edit)
    assert [
        e["action"]
        for e in await AuditEvent.select(AuditEvent.action)
        .where(AuditEvent.object_id == campaign_id, AuditEvent.object_type == "campaign")
        .order_by(AuditEvent.id)
    ] == ["campaign.created", "campaign.pause", "campaign.resume", "campaign.end"]


BAD_TERMS = {
    "negative amount": (
        {"goal_0_advertiser": "-5.00"},
        "goal_0_advertiser",
        "What the advertiser pays for 'sale' cannot be negative.",
    ),
    "publisher paid more than the advertiser pays": (
        {"goal_0_advertiser": "5.00", "goal_0_publisher": "6.00"},
        "goal_0_publisher",
        "The publisher payout for 'sale' cannot be more than what the advertiser pays.",
    ),
    "unknown currency": ({"currency": "ZZZ"}, "currency", "ZZZ is not an ISO 4217 currency code"),
    "landing page outside its own allowed domains": (
        {"landing_url": "https://elsewhere.example/boots"},
        "landing_url",
        "Landing URL must be an http(s) address on one of the allowed domains",
    ),
    "daily budget above total budget": (
        {"total_budget": "100.00", "daily_budget": "200.00"},
        "daily_budget",
        "The daily budget cannot be larger than the total budget.",
    ),
    "no goal at all": ({"goal_0_name": "", "goal_0_advertiser": ""}, "goal_0_name", "Add at least one goal"),
    "more decimals than the currency has": (
        {"goal_0_advertiser": "1.234"},
        "goal_0_advertiser",
        "has more decimals than EUR allows (2)",
    ),
    "more decimals than a zero-decimal currency has": (
        {"currency": "JPY", "goal_0_advertiser": "100.5"},
        "goal_0_advertiser",
        "has more decimals than JPY allows (0)",
    ),
    "revenue share above 100 %": (
        {"goal_0_model": "revshare", "goal_0_advertiser": "150"},
        "goal_0_advertiser",
        "must be between 0 and 100 %",
    ),
}


@pytest.mark.parametrize("changes,field,message", BAD_TERMS.values(), ids=BAD_TERMS.keys())
async def test_bad_terms_are_refused_with_a_clear_message_and_change_nothing(client, changes, field, message):
    await logged_in_advertiser(client)
    response = await post_form(client, f"{BASE}/new", campaign_form(**changes))
    assert response.status_code == 422
    assert message in shown_error(response)
    # The form comes back with what was typed, the faulty field marked.
    assert 'value="Winter boots"' in response.text
    assert marked_invalid(response.text, field)
    assert await Campaign.count() == 0 and await Goal.count() == 0


async def test_the_default_margin_fills_the_publisher_amount_rounding_down(client):
    await logged_in_advertiser(client)
    campaign_id = await create(
        client,
        goal_1_name="lead",
        goal_1_model="cpl",
        goal_1_advertiser="0.99",
        goal_2_name="share",
        goal_2_model="revshare",
        goal_2_advertiser="7.5",
        goal_3_name="click",
        goal_3_model="cpc",
        goal_3_advertiser="0.33",
        goal_3_publisher="0.30",
    )
    goals = await Goal.select().where(Goal.campaign == campaign_id).order_by(Goal.position)
    assert [(g["name"], g["advertiser_amount"], g["publisher_amount"]) for g in goals] == [
        ("sale", 1000, 800),  # 10.00 less 20 % = 8.00
        ("lead", 99, 79),  # 0.792 rounds down: the fraction of a cent stays with the network
        ("share", 750, 600),  # 7.5 % of the sale less 20 % = 6 %
        ("click", 33, 30),  # an explicit publisher amount wins
    ]
    page = html.unescape((await client.get(f"{BASE}/{campaign_id}")).text)
    assert "Earn €0.79 per lead (lead)" in page and "Earn 6% of each sale (share)" in page


async def _others_campaign(settings) -> dict[str, Any]:
    """Advertiser A's campaign with an applicant and a creative, built through the services."""
    owner_id, owner_email = await make_advertiser()
    owner = as_user(owner_id, owner_email)
    campaign_id = await campaigns.create_campaign(owner, campaign_form(visibility="approval"))
    pub_id, pub_email = await make_publisher(settings)
    await campaigns.join(as_user(pub_id, pub_email, Role.publisher), campaign_id)
    membership = await Membership.select(Membership.id).where(Membership.campaign == campaign_id).first()
    creative_id = await creatives.add_text(owner, campaign_id, {"name": "Ad", "text": "Buy boots"})
    return {"campaign_id": campaign_id, "membership_id": membership["id"], "creative_id": creative_id}


async def test_another_advertisers_campaign_answers_404_and_changes_nothing(client, new_client, settings):
    theirs = await _others_campaign(settings)
    cid, mid, crid = theirs["campaign_id"], theirs["membership_id"], theirs["creative_id"]
    await logged_in_advertiser(client)
    mine = await create(client, visibility="approval")
    before = {
        "campaign": await Campaign.select().where(Campaign.id == cid).first(),
        "goals": await Goal.select().where(Goal.campaign == cid),
        "membership": await Membership.select().where(Membership.id == mid).first(),
        "creative": await Creative.select().where(Creative.id == crid).first(),
    }

    for path in (f"{BASE}/{cid}", f"{BASE}/{cid}/edit"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "Winter boots" not in response.text
    posts = {
        f"{BASE}/{cid}/edit": campaign_form(name="Hijacked"),
        f"{BASE}/{cid}/pause": {},
        f"{BASE}/{cid}/end": {"confirm": "on"},
        f"{BASE}/{cid}/creatives/text": {"name": "Mine now", "text": "Spam"},
        f"{BASE}/{cid}/creatives/{crid}/archive": {},
        f"{BASE}/{mine}/creatives/{crid}/archive": {},  # their creative through my campaign's address
        f"{BASE}/{cid}/members/{mid}/accept": {},
        f"{BASE}/{cid}/members/{mid}/decline": {},
        f"{BASE}/{mine}/members/{mid}/accept": {},  # their applicant through my campaign's address
        f"{BASE}/{cid}/invite": {"publisher_email": "someone@affnet.example"},
    }
    for path, data in posts.items():
        response = await post_form(client, path, data)
        assert response.status_code == 404, (path, response.status_code)
    upload = await client.post(
        f"{BASE}/{cid}/creatives/image",
        data={"name": "x", "_csrf_token": client.cookies["affnet_csrf"]},
        files={"file": ("a.png", b"\x89PNG", "image/png")},
    )
    assert upload.status_code == 404

    assert before == {
        "campaign": await Campaign.select().where(Campaign.id == cid).first(),
        "goals": await Goal.select().where(Goal.campaign == cid),
        "membership": await Membership.select().where(Membership.id == mid).first(),
        "creative": await Creative.select().where(Creative.id == crid).first(),
    }
    assert await Creative.count() == 1 and await Link.count() == 0 and await Membership.count() == 1

    # Publishers are not let in at all.
    _, pub_email = await make_publisher(settings)
    publisher = new_client()
    await login(publisher, pub_email)
    for path in (BASE, f"{BASE}/new", f"{BASE}/{cid}"):
        assert (await publisher.get(path)).status_code == 403, path
    assert (await post_form(publisher, f"{BASE}/{cid}/pause")).status_code == 403
    assert (await Campaign.select(Campaign.status).where(Campaign.id == cid).first())["status"] == "active"


async def test_an_accepted_applicant_gets_a_tracked_link_and_a_declined_one_none(client, settings):
    await logged_in_advertiser(client)
    campaign_id = await create(client, visibility="approval")
    applicants = {}
    for name in ("Cooking Blog", "Hiking Blog"):
        pub_id, pub_email = await make_publisher(settings, display_name=name)
        status = await campaigns.join(as_user(pub_id, pub_email, Role.publisher), campaign_id)
        assert status == "applied"
        applicants[name] = (await Membership.select(Membership.id).where(Membership.publisher == pub_id).first())["id"]
    assert await Link.count() == 0  # applying alone gives no link

    page = await client.get(f"{BASE}/{campaign_id}")
    assert "Cooking Blog" in page.text and "Hiking Blog" in page.text and "home cooks" in page.text
    assert '<a href="https://blog.affnet.example" rel="nofollow noopener"' in page.text
    assert f'formaction="{BASE}/{campaign_id}/members/{applicants["Cooking Blog"]}/accept"' in page.text

    accepted = applicants["Cooking Blog"]
    response = await post_form(client, f"{BASE}/{campaign_id}/members/{accepted}/accept", {"note": "Welcome!"})
    assert response.status_code == 303
    row = await Membership.select().where(Membership.id == accepted).first()
    assert row["status"] == "approved" and row["note"] == "Welcome!" and row["decided_at"] is not None
    links = await Link.select().where(Link.membership == accepted)
    assert len(links) == 1 and links[0]["campaign"] == campaign_id and links[0]["code"]

    declined = applicants["Hiking Blog"]
    response = await post_form(client, f"{BASE}/{campaign_id}/members/{declined}/decline")
    assert response.status_code == 303
    assert (await Membership.select(Membership.status).where(Membership.id == declined).first())["status"] == (
        "declined"
    )
    assert not await Link.exists().where(Link.membership == declined)
    assert await Link.count() == 1

    too_long = await post_form(client, f"{BASE}/{campaign_id}/members/{declined}/accept", {"note": "x" * 501})
    assert too_long.status_code == 422 and "Note is limited to 500 characters." in shown_error(too_long)
    assert not await Link.exists().where(Link.membership == declined)


async def test_click_statistics_show_valid_and_unpaid_clicks_by_publisher_and_reason(client, settings):
    await logged_in_advertiser(client)
    campaign_id = await create(client)
    assert "No clicks yet." in (await client.get(f"{BASE}/{campaign_id}")).text
    pub_id, pub_email = await make_publisher(settings, display_name="Hiking Blog")
    await campaigns.join(as_user(pub_id, pub_email, Role.publisher), campaign_id)
    link = await Link.select().first()
    now = datetime.now(UTC)
    reasons = ["valid", "valid", "valid", "bot", "duplicate", "duplicate"]
    await tracking.write_clicks(
        [
            (
                f"click-{i}",
                now,
                link["id"],
                campaign_id,
                pub_id,
                "",
                "",
                "",
                "",
                "",
                "",
                "Chrome",
                "v",
                reason,
                None,
                "",
            )
            for i, reason in enumerate(reasons)
        ]
    )

    page = await client.get(f"{BASE}/{campaign_id}")
    row = re.search(r"<td>Hiking Blog</td>(.*?)</tr>", page.text, re.S)
    assert row, page.text
    cells = [html.unescape(c).strip() for c in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    assert cells[:2] == ["3", "3"]
    assert "1 Bot or crawler user agent" in cells[2] and "2 Repeat click by the same visitor" in cells[2]


async def test_a_private_campaign_invites_publishers_by_email(client, settings):
    await logged_in_advertiser(client)
    public_id = await create(client)
    assert "Invite a publisher by email" not in (await client.get(f"{BASE}/{public_id}")).text
    campaign_id = await create(client, visibility="private")
    assert "Invite a publisher by email" in (await client.get(f"{BASE}/{campaign_id}")).text
    _, pub_email = await make_publisher(settings, display_name="Invited Blog")

    response = await post_form(client, f"{BASE}/{campaign_id}/invite", {"publisher_email": pub_email})
    assert response.status_code == 303
    row = await Membership.select().where(Membership.campaign == campaign_id).first()
    assert row["status"] == "invited"
    page = await client.get(f"{BASE}/{campaign_id}")
    assert "Invited Blog" in page.text and "Waiting for the publisher to accept." in page.text

    again = await post_form(client, f"{BASE}/{campaign_id}/invite", {"publisher_email": pub_email})
    assert again.status_code == 409 and "already invited" in shown_error(again)
    unknown = await post_form(client, f"{BASE}/{campaign_id}/invite", {"publisher_email": "nobody@affnet.example"})
    assert unknown.status_code == 422 and shown_error(unknown) == "No publisher has that email address."
    assert 'value="nobody@affnet.example"' in unknown.text
    assert await Membership.count() == 1
