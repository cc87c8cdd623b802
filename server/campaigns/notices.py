"""The mail a campaign's memberships cause: a publisher applied (to the advertiser), an application
decided (to the publisher), an invitation to a private campaign (to the publisher), and a campaign
paused for funds (to the advertiser). Each is written by the caller inside the transaction of its
event (server/accounts/notify.py), so it exists exactly when the event does.

The advertiser reads a publisher's public profile only (name and site): never their e-mail address."""

from __future__ import annotations

from datetime import UTC, datetime

from server.accounts import notify
from server.accounts.tables import Advertiser, Publisher
from server.campaigns.tables import Campaign
from server.core import clock
from server.ledger import service as ledger
from server.ledger.tables import AccountKind
from server.mail import outbox


async def _campaign(campaign_id: int) -> dict:
    return (
        await Campaign.select(Campaign.id, Campaign.name, Campaign.advertiser, Campaign.currency)
        .where(Campaign.id == campaign_id)
        .first()
    )


async def publisher_applied(campaign_id: int, publisher_id: int) -> None:
    campaign = await _campaign(campaign_id)
    profile = (
        await Publisher.select(Publisher.display_name, Publisher.blog_url).where(Publisher.user == publisher_id).first()
    ) or {"display_name": "", "blog_url": ""}
    await notify.send(
        "publisher_applied",
        campaign["advertiser"],
        {
            "campaign_name": campaign["name"],
            "publisher_name": profile["display_name"],
            "publisher_site": profile["blog_url"],
            "review_url": outbox.link(f"/advertiser/campaigns/{campaign_id}#publishers"),
        },
    )


async def application_decided(campaign_id: int, publisher_id: int, *, accepted: bool, note: str) -> None:
    campaign = await _campaign(campaign_id)
    await notify.send(
        "application_decided",
        publisher_id,
        {
            "campaign_name": campaign["name"],
            "accepted": accepted,
            "reason": note,
            "campaign_url": outbox.link(
                f"/publisher/campaigns/{campaign_id}/link"
                if accepted
                else f"/publisher/campaigns#campaign-{campaign_id}"
            ),
            "links_url": outbox.link("/publisher/links"),
        },
    )


async def invited(campaign_id: int, publisher_id: int) -> None:
    campaign = await _campaign(campaign_id)
    company = await Advertiser.select(Advertiser.company_name).where(Advertiser.user == campaign["advertiser"]).first()
    await notify.send(
        "campaign_invitation",
        publisher_id,
        {
            "campaign_name": campaign["name"],
            "advertiser_name": company["company_name"] if company else "",
            "campaign_url": outbox.link(f"/publisher/campaigns#campaign-{campaign_id}"),
        },
    )


async def balance_low(
    advertiser_id: int,
    currency: str,
    *,
    threshold_minor: int,
    paused_campaign: str = "",
    now: datetime | None = None,
) -> int | None:
    """The advertiser's balance in `currency` is low, or a campaign of theirs was paused for funds.
    At most one of each a UTC day per advertiser and currency (a pause is told even after a warning)."""
    now = now or clock.now()
    balance = await ledger.balance(AccountKind.advertiser_balance, currency, advertiser_id)
    what = "paused" if paused_campaign else "low"
    return await notify.send(
        "balance_low",
        advertiser_id,
        {
            "currency": currency,
            "balance_minor": balance,
            "threshold_minor": threshold_minor,
            "paused_campaign": paused_campaign,
            "billing_url": outbox.link("/advertiser/billing"),
            "campaigns_url": outbox.link("/advertiser/campaigns"),
        },
        dedupe_key=f"balance_low:{what}:{advertiser_id}:{currency}:{utc_day(now)}",
        now=now,
    )


def utc_day(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()
