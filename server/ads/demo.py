"""Demo ads for `make run`: the demo shop's banner campaign, joined by the demo publisher, and the
publisher's sidebar slot that /demo/blog shows. Idempotent: it adds only what is missing."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role, User
from server.ads import service as ads
from server.ads.tables import AdSlot
from server.campaigns import creatives
from server.campaigns import service as campaigns
from server.campaigns.tables import Campaign, Creative

DEMO_ADVERTISER = "advertiser@affnet.example"
DEMO_PUBLISHER = "publisher@affnet.example"
CAMPAIGN_NAME = "Demo Shop knives (banners)"


def banner(width: int, height: int, headline: str, line: str) -> bytes:
    """A simple PNG banner drawn here, so the demo needs no image files."""
    image = Image.new("RGB", (width, height), (32, 87, 214))
    draw = ImageDraw.Draw(image)
    big = ImageFont.load_default(size=max(14, min(height // 5, width // 12)))
    small = ImageFont.load_default(size=max(11, min(height // 9, width // 20)))
    draw.rectangle((4, 4, width - 5, height - 5), outline=(255, 255, 255), width=2)
    draw.text((width // 2, height // 2 - height // 10), headline, font=big, fill=(255, 255, 255), anchor="mm")
    draw.text((width // 2, height // 2 + height // 5), line, font=small, fill=(255, 226, 120), anchor="mm")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def seed_demo_ads(settings: Any) -> None:
    adv = await User.select(User.id).where(User.email == DEMO_ADVERTISER).first()
    pub = await User.select(User.id).where(User.email == DEMO_PUBLISHER).first()
    if adv is None or pub is None:
        return
    advertiser = CurrentUser(adv["id"], DEMO_ADVERTISER, Role.advertiser, "cli")
    publisher = CurrentUser(pub["id"], DEMO_PUBLISHER, Role.publisher, "cli")
    row = (
        await Campaign.select(Campaign.id)
        .where(Campaign.advertiser == adv["id"], Campaign.name == CAMPAIGN_NAME)
        .first()
    )
    if row is None:
        campaign_id = await campaigns.create_campaign(
            advertiser,
            {
                "name": CAMPAIGN_NAME,
                "description": "Banners for food and cooking blogs; paid per thousand views.",
                "category": "home",
                "currency": "EUR",
                "landing_url": "https://shop.affnet.example/knives",
                "allowed_domains": "shop.affnet.example",
                "visibility": "public",
                "hold_days": "7",
                "goal_0_name": "view",
                "goal_0_model": "cpm",
                "goal_0_advertiser": "2.50",
            },
        )
        await campaigns.join(publisher, campaign_id)
    else:
        campaign_id = row["id"]
    if not await Creative.exists().where(Creative.campaign == campaign_id):
        for (width, height), line in (((300, 250), "Chef's knives, 30 % off"), ((728, 90), "30 % off this week")):
            await creatives.add_image(
                advertiser,
                campaign_id,
                {"name": f"Spring knives {width}x{height}"},
                banner(width, height, "Demo Shop", line),
                media_dir=settings.media_dir,
                max_bytes=settings.max_upload_bytes,
            )
        await creatives.add_text(
            advertiser,
            campaign_id,
            {"name": "Spring knives text", "text": "Chef's knives from Demo Shop: 30 % off this week, free delivery."},
        )
    if not await AdSlot.exists().where(AdSlot.publisher == pub["id"]):
        await ads.create_slot(
            publisher,
            {
                "name": "Demo blog sidebar",
                "format": "300x250",
                "domains": "blog.affnet.example",
                "fallback": "house",
                "house_text": "Get the Demo Blog's recipes every week",
                "house_url": "https://blog.affnet.example/newsletter",
            },
        )
