"""Campaigns with a joined publisher, built through the services, for tracking tests."""

from __future__ import annotations

from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import service as campaigns
from server.campaigns.tables import Link
from server.tracking.visitor import COOKIE
from tests.factories import make_advertiser, make_publisher


def campaign_form(**overrides: Any) -> dict[str, str]:
    form = {
        "name": "Spring Boots",
        "description": "Hiking boots",
        "category": "fashion",
        "currency": "EUR",
        "landing_url": "https://shop.example.com/boots",
        "allowed_domains": "shop.example.com\nblog.shop.example.com",
        "fallback_url": "https://fallback.example.org/",
        "visibility": "public",
        "goal_0_name": "sale",
        "goal_0_model": "cpa",
        "goal_0_advertiser": "10.00",
    }
    form.update({k: str(v) for k, v in overrides.items()})
    return form


@dataclass
class Setup:
    advertiser: CurrentUser
    publisher: CurrentUser
    publisher_email: str
    campaign_id: int
    code: str
    link_id: int


async def campaign_with_link(settings, **overrides: Any) -> Setup:
    adv_id, adv_email = await make_advertiser()
    advertiser = CurrentUser(id=adv_id, email=adv_email, role=Role.advertiser, via="test")
    campaign_id = await campaigns.create_campaign(advertiser, campaign_form(**overrides))
    pub_id, pub_email = await make_publisher(settings)
    publisher = CurrentUser(id=pub_id, email=pub_email, role=Role.publisher, via="test")
    await campaigns.join(publisher, campaign_id)
    link = await Link.select(Link.id, Link.code).where(Link.campaign == campaign_id, Link.publisher == pub_id).first()
    return Setup(advertiser, publisher, pub_email, campaign_id, link["code"], link["id"])


class _KeepNoCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False


def cookieless() -> CookieJar:
    """A cookie jar for an httpx client whose every request is a new reader's browser (or a tool
    that keeps no cookie): it never sends back the redirect's visitor cookie."""
    return CookieJar(policy=_KeepNoCookies())


def another_reader(client: httpx.AsyncClient) -> None:
    """The client's next click is another reader's: it forgets the visitor cookie an earlier click
    gave it (server/tracking/visitor.py), and keeps its others (a session)."""
    client.cookies.delete(COOKIE)
