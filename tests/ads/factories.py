"""Ad campaigns with banners and text ads, publishers' slots, and calls to the ads endpoints,
built through the services and the real HTTP edges."""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.ads import service as ads
from server.ads.tables import Impression
from server.campaigns import creatives
from server.campaigns import service as campaigns
from server.campaigns.tables import Link
from tests.factories import make_advertiser, make_publisher
from tests.tracking.factories import campaign_form

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
PAGE = "https://blog.example.org/posts/knives"
_colour = itertools.count(1)


def banner(width: int, height: int) -> bytes:
    """A real PNG of the given size (each one a different colour)."""
    n = next(_colour)
    out = io.BytesIO()
    Image.new("RGB", (width, height), ((n * 40) % 256, (n * 90) % 256, (n * 150) % 256)).save(out, "PNG")
    return out.getvalue()


def as_user(user_id: int, email: str, role: Role) -> CurrentUser:
    return CurrentUser(id=user_id, email=email, role=role, via="test")


@dataclass
class AdCampaign:
    advertiser: CurrentUser
    campaign_id: int
    creatives: dict[str, int]  # "300x250", "728x90", "native", ... -> creative id


async def ad_campaign(
    settings,
    *,
    sizes: tuple[tuple[int, int], ...] = ((300, 250),),
    text: str | None = None,
    cpm: str = "2.00",
    cpm_publisher: str = "1.50",
    **terms: Any,
) -> AdCampaign:
    """A campaign paying per thousand impressions with banners of the given sizes (and a text ad)."""
    adv_id, adv_email = await make_advertiser()
    advertiser = as_user(adv_id, adv_email, Role.advertiser)
    form = campaign_form(
        goal_0_name="view", goal_0_model="cpm", goal_0_advertiser=cpm, goal_0_publisher=cpm_publisher, **terms
    )
    campaign_id = await campaigns.create_campaign(advertiser, form)
    made: dict[str, int] = {}
    for width, height in sizes:
        made[f"{width}x{height}"] = await creatives.add_image(
            advertiser,
            campaign_id,
            {"name": f"Banner {width}x{height}"},
            banner(width, height),
            media_dir=settings.media_dir,
            max_bytes=settings.max_upload_bytes,
        )
    if text is not None:
        made["native"] = await creatives.add_text(advertiser, campaign_id, {"name": "Text ad", "text": text})
    return AdCampaign(advertiser, campaign_id, made)


async def publisher(settings) -> CurrentUser:
    user_id, email = await make_publisher(settings)
    return as_user(user_id, email, Role.publisher)


async def join(pub: CurrentUser, campaign: AdCampaign) -> tuple[int, str]:
    """The publisher joins the campaign: (link id, link code)."""
    await campaigns.join(pub, campaign.campaign_id)
    link = (
        await Link.select(Link.id, Link.code)
        .where(Link.campaign == campaign.campaign_id, Link.publisher == pub.id)
        .first()
    )
    return link["id"], link["code"]


def slot_form(**overrides: Any) -> dict[str, str]:
    form = {"name": "Sidebar", "format": "300x250", "domains": "blog.example.org", "fallback": "collapse"}
    form.update({k: str(v) for k, v in overrides.items()})
    return form


async def slot(pub: CurrentUser, **overrides: Any) -> dict[str, Any]:
    # Tests run as development does: site domains may be loopback names (127.0.0.1, localhost).
    slot_id = await ads.create_slot(pub, slot_form(**overrides), loopback_allowed=True)
    return await ads.owned_slot(pub, slot_id)


async def decide(
    client: httpx.AsyncClient,
    key: str,
    *,
    origin: str | None = "https://blog.example.org",
    ua: str = BROWSER,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"user-agent": ua, **({"origin": origin} if origin else {}), **(headers or {})}
    return await client.get("/ads/decide", params={"slot": key}, headers=sent)


async def served_ad(client: httpx.AsyncClient, settings, **terms: Any) -> tuple:
    """A publisher's slot with one campaign to show, and one decision for it:
    (campaign, publisher, slot, link id, link code, the decision's answer)."""
    camp = await ad_campaign(settings, **terms)
    pub = await publisher(settings)
    link_id, code = await join(pub, camp)
    s = await slot(pub)
    answer = (await decide(client, s["public_key"])).json()
    assert answer["status"] == "ad"
    return camp, pub, s, link_id, code, answer


def path_of(url: str) -> str:
    """The path and query of an absolute affnet URL, to call it through the test client."""
    parts = httpx.URL(url)
    return parts.raw_path.decode()


async def view(client: httpx.AsyncClient, view_url: str, *, ua: str = BROWSER) -> httpx.Response:
    return await client.post(path_of(view_url), headers={"user-agent": ua})


async def stored_impressions(app) -> list[dict]:
    await app.state.ads.buffer.flush()
    return await Impression.select().order_by(Impression.id)
