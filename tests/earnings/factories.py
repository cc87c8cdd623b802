"""CPC campaigns and stored clicks at chosen moments, built through the services, for CPC tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import service as campaigns
from server.campaigns.tables import Link
from server.ledger import postings
from server.tracking import service as tracking
from tests.factories import make_publisher
from tests.tracking.factories import Setup, campaign_with_link

# A Tuesday; the job runs a few minutes after noon, so hours up to 11:00 are closed.
DAY = datetime(2026, 3, 10, tzinfo=UTC)
NOW = DAY + timedelta(hours=12, minutes=10)
_click_seq = itertools.count(1)
_fund_seq = itertools.count(1)


def at(hour: int, minute: int = 0, second: int = 0, *, days: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour, minutes=minute, seconds=second)


async def cpc_campaign(settings, *, price: str = "0.37", payout: str = "0.29", **terms: Any) -> Setup:
    """A campaign paying `price` per valid click (the publisher earns `payout`), one publisher joined."""
    return await campaign_with_link(
        settings,
        goal_0_name="click",
        goal_0_model="cpc",
        goal_0_advertiser=price,
        goal_0_publisher=payout,
        hold_days=terms.pop("hold_days", 30),
        **terms,
    )


async def another_publisher(settings, setup: Setup) -> tuple[int, int]:
    """A second publisher joined to the campaign: (user id, link id)."""
    pub_id, pub_email = await make_publisher(settings)
    await campaigns.join(CurrentUser(id=pub_id, email=pub_email, role=Role.publisher, via="test"), setup.campaign_id)
    link = await Link.select(Link.id).where(Link.campaign == setup.campaign_id, Link.publisher == pub_id).first()
    return pub_id, link["id"]


async def join(setup: Setup, publisher: CurrentUser) -> int:
    """An existing publisher joins the campaign: their link's id."""
    await campaigns.join(publisher, setup.campaign_id)
    link = await Link.select(Link.id).where(Link.campaign == setup.campaign_id, Link.publisher == publisher.id).first()
    return link["id"]


async def clicks(
    setup: Setup,
    moments: list[datetime],
    *,
    publisher_id: int | None = None,
    link_id: int | None = None,
    reason: str = "valid",
) -> None:
    """Store clicks through the tracking service's batch writer, as the redirect's buffer does."""
    publisher_id = publisher_id or setup.publisher.id
    link_id = link_id or setup.link_id
    rows = [
        (
            f"test-click-{next(_click_seq)}",
            moment,
            link_id,
            setup.campaign_id,
            publisher_id,
            "",
            "",
            "",
            "",
            "",
            "",
            "Chrome",
            "visitor",
            reason,
            None,
            "",
        )
        for moment in moments
    ]
    await tracking.write_clicks(rows)


def spread(hour: int, n: int, *, start_minute: int = 0, days: int = 0) -> list[datetime]:
    """n moments a few seconds apart within one hour."""
    return [at(hour, start_minute, 5 * i, days=days) for i in range(n)]


async def fund(setup: Setup, amount: int, currency: str = "EUR") -> None:
    n = next(_fund_seq)
    await postings.fund_advertiser(
        setup.advertiser.id, amount, currency, reference_id=n, key=f"test-funding-{setup.campaign_id}-{n}"
    )
