"""Demo data for `make run` and `affnet-dev demo`: the demo users (admin, finance, advertiser, publisher), the
demo shop's campaign joined by the demo publisher, its banner campaign, the publisher's sidebar slot that
/demo/blog shows, and the demo advertiser's funds (without them publishers are offered none of its
campaigns). Idempotent: it adds only what is missing."""

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
from server.ledger import postings

DEMO_PASSWORD = "demo-password-2026"  # noqa: S105 - printed on purpose; refused in production
DEMO_USERS = [
    (Role.admin, "admin@affnet.example"),
    (Role.finance, "finance@affnet.example"),
    (Role.finance, "finance2@affnet.example"),
    (Role.advertiser, "advertiser@affnet.example"),
    (Role.publisher, "publisher@affnet.example"),
]
DEMO_ADVERTISER = "advertiser@affnet.example"
DEMO_PUBLISHER = "publisher@affnet.example"
CAMPAIGN_NAME = "Demo Shop knives (banners)"
DEMO_FUNDS_MINOR = 50_000  # EUR 500.00, the demo campaigns' currency
# One funding ever: the ledger posts a key once, so a second `make run` finds it and funds nothing.
DEMO_FUNDING_KEY = "demo:funding:advertiser@affnet.example"


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


async def seed_demo(settings) -> list[tuple[str, str]]:
    """Create the demo users that do not exist yet; return every demo login."""
    from server.accounts import mailbox
    from server.accounts import service as accounts
    from server.accounts.tables import User

    for role, email in DEMO_USERS:
        if await User.exists().where(User.email == email):
            continue
        if role is Role.publisher:
            uid = await accounts.signup_publisher(
                {
                    "email": email,
                    "password": DEMO_PASSWORD,
                    "display_name": "Demo Blog",
                    "blog_url": "https://blog.affnet.example",
                    "audience": "Home cooks, about 20k readers a month",
                },
                settings,
            )
            await mailbox.mark_verified(uid)  # demo addresses are vouched for: approval needs it
            await accounts.review_publisher(_system_admin(), await _publisher_id(uid), approve=True)
        elif role is Role.advertiser:
            uid = await accounts.signup_advertiser(
                {
                    "email": email,
                    "password": DEMO_PASSWORD,
                    "company_name": "Demo Shop",
                    "website": "https://shop.affnet.example",
                }
            )
            await mailbox.mark_verified(uid)
        else:
            await accounts.create_user(email, DEMO_PASSWORD, role)
    await _seed_demo_campaign()
    await seed_demo_ads(settings)
    await _fund_demo_advertiser()
    await _demo_billing_profile()
    return [(role.value, email) for role, email in DEMO_USERS]


async def _seed_demo_campaign() -> None:
    """The demo advertiser's campaign, joined by the demo publisher, so a link works at once."""
    from server.accounts.identity import CurrentUser
    from server.accounts.tables import User
    from server.campaigns import service as campaigns
    from server.campaigns.tables import Campaign

    adv = await User.select(User.id).where(User.email == "advertiser@affnet.example").first()
    pub = await User.select(User.id).where(User.email == "publisher@affnet.example").first()
    if adv is None or pub is None or await Campaign.exists().where(Campaign.advertiser == adv["id"]):
        return
    campaign_id = await campaigns.create_campaign(
        CurrentUser(adv["id"], "advertiser@affnet.example", Role.advertiser, "cli"),
        {
            "name": "Demo Shop spring sale",
            "description": "Kitchen knives and pans for home cooks.",
            "category": "home",
            "currency": "EUR",
            "landing_url": "https://shop.affnet.example/spring",
            "allowed_domains": "shop.affnet.example",
            "visibility": "public",
            "goal_0_name": "sale",
            "goal_0_model": "revshare",
            "goal_0_advertiser": "10",
            "goal_1_name": "lead",
            "goal_1_model": "cpl",
            "goal_1_advertiser": "2.50",
        },
    )
    await campaigns.join(CurrentUser(pub["id"], "publisher@affnet.example", Role.publisher, "cli"), campaign_id)


async def _fund_demo_advertiser() -> None:
    """Money on the demo advertiser's balance, as a Stripe top-up would bring: publishers are offered
    only the campaigns of an advertiser who can pay them."""
    adv = await User.select(User.id).where(User.email == DEMO_ADVERTISER).first()
    if adv is None:
        return
    await postings.fund_advertiser(adv["id"], DEMO_FUNDS_MINOR, "EUR", reference_id=adv["id"], key=DEMO_FUNDING_KEY)


async def _demo_billing_profile() -> None:
    """The demo advertiser's billing details (a French company: its top-ups bear 20 % VAT), so a top-up
    works at once; the demo publisher fills in theirs to try self-billing."""
    from server.core import clock
    from server.invoicing.tables import BillingProfile

    adv = await User.select(User.id).where(User.email == DEMO_ADVERTISER).first()
    if adv is None or await BillingProfile.exists().where(BillingProfile.user == adv["id"]):
        return
    now = clock.now()
    await BillingProfile.insert(
        BillingProfile(
            user=adv["id"],
            kind="business",
            legal_name="Demo Shop SARL",
            address="5 rue du Commerce",
            postcode="69002",
            city="Lyon",
            country="FR",
            company_number="55210055400013",
            vat_number="FR96552100554",
            created_at=now,
            updated_at=now,
        )
    )


def _system_admin():
    from server.accounts.identity import CurrentUser

    return CurrentUser(id=None, email="system", role=Role.admin, via="cli")  # type: ignore[arg-type]


async def _publisher_id(user_id: int) -> int:
    from server.accounts.tables import Publisher

    row = await Publisher.select(Publisher.id).where(Publisher.user == user_id).first()
    return row["id"]
