"""Tables owned by the campaigns domain; only server/campaigns/service.py writes them."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User

# A link's free-form parameters: a publisher's own labels on /c/{code}?sub1=…, stored with each click
# (server/tracking), forwarded to the landing page where the campaign says so (Campaign.forward_subs).
SUB_NAMES = ("sub1", "sub2", "sub3", "sub4", "sub5")


class CampaignStatus(StrEnum):
    active = "active"
    paused = "paused"
    ended = "ended"


class Visibility(StrEnum):
    public = "public"  # any approved publisher may join
    approval = "approval"  # publishers apply, the advertiser accepts or declines
    private = "private"  # by invitation only


class PayoutModel(StrEnum):
    cpc = "cpc"  # per valid click
    cpm = "cpm"  # per thousand valid impressions
    cpl = "cpl"  # per lead
    cpa = "cpa"  # flat per sale
    revshare = "revshare"  # a share of the sale amount


class MembershipStatus(StrEnum):
    applied = "applied"
    approved = "approved"
    declined = "declined"
    invited = "invited"
    removed = "removed"


class CreativeKind(StrEnum):
    text = "text"
    image = "image"


class Campaign(Table):
    advertiser = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    name = Varchar(length=120)
    description = Text(default="")
    category = Varchar(length=40, default="other", index=True)
    landing_url = Varchar(length=2048)
    # Host names, one per line, already normalised (lower-case, punycode).
    allowed_domains = Text()
    currency = Varchar(length=3)
    total_budget_minor = BigInt(null=True, default=None)
    daily_budget_minor = BigInt(null=True, default=None)
    cap_clicks_daily = Integer(null=True, default=None)
    cap_conversions_daily = Integer(null=True, default=None)
    cap_conversions_monthly = Integer(null=True, default=None)
    cap_publisher_clicks_daily = Integer(null=True, default=None)
    cap_publisher_conversions_daily = Integer(null=True, default=None)
    cap_publisher_conversions_monthly = Integer(null=True, default=None)
    attribution_window_days = Integer(default=30)
    hold_days = Integer(default=30)
    min_conversion_seconds = Integer(default=0)
    visibility = Varchar(length=10, choices=Visibility, default=Visibility.public)
    fallback_url = Varchar(length=2048, default="")
    click_id_param = Varchar(length=32, default="click_id")
    # Which of sub1..sub5 are forwarded to the landing page, comma-separated.
    forward_subs = Varchar(length=40, default="")
    status = Varchar(length=10, choices=CampaignStatus, default=CampaignStatus.active, index=True)
    status_reason = Text(default="")
    # Conversion intake: the secret `token` of server-to-server postbacks, and the public key of
    # the pixel URL (/px/{public_key}.gif), unique through an index made by a raw migration step.
    postback_secret = Varchar(length=64, default="")
    public_key = Varchar(length=24, default="")
    # The advertiser may switch the pixel off: a pixel fires from the visitor's browser, so anyone
    # holding a click id can fire it. Off, /px/{public_key}.gif records nothing (`pixel_disabled`).
    pixel_enabled = Boolean(default=True)
    # The click-quality rules (server/tracking/classify.py: datacenter, prefetch, suspicious_headers)
    # the advertiser switched off for this campaign, comma-separated; read with the link's terms into
    # the redirect's memory (server/tracking/cache.py: Target.rules_off), never per click.
    click_rules_off = Varchar(length=80, default="")
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Goal(Table):
    """What the advertiser pays for. Amounts are minor units of the campaign currency, per event
    (per thousand impressions for CPM), or basis points of the sale amount for RevShare."""

    campaign = ForeignKey(Campaign, null=False, index=True, on_delete=OnDelete.restrict)
    name = Varchar(length=40)
    payout_model = Varchar(length=10, choices=PayoutModel)
    advertiser_amount = BigInt()
    publisher_amount = BigInt()
    position = Integer(default=0)
    # Conversion goals (CPL, CPA, RevShare): how many conversions one click may bring, however
    # reported (`click_limit_reached` beyond it), and for RevShare the largest sale amount a
    # report may carry, in minor units (`amount_above_max` above it): what one report can cost.
    conversions_per_click = Integer(default=1)
    max_sale_minor = BigInt(null=True, default=None)


class Creative(Table):
    campaign = ForeignKey(Campaign, null=False, index=True, on_delete=OnDelete.restrict)
    kind = Varchar(length=10, choices=CreativeKind)
    name = Varchar(length=120)
    text = Varchar(length=300, default="")
    image_path = Varchar(length=255, default="")
    mime_type = Varchar(length=32, default="")
    width = Integer(default=0)
    height = Integer(default=0)
    iab_size = Varchar(length=16, default="")
    byte_size = Integer(default=0)
    archived = Boolean(default=False)
    created_at = Timestamptz()


class Membership(Table):
    """A publisher's standing in a campaign. Unique per (campaign, publisher): a unique index made
    by a raw step in the migration (Piccolo's composite constraint cannot be added on SQLite)."""

    campaign = ForeignKey(Campaign, null=False, index=True, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    status = Varchar(length=10, choices=MembershipStatus)
    note = Text(default="")
    created_at = Timestamptz()
    decided_at = Timestamptz(null=True, default=None)


class Link(Table):
    """A publisher's tracked link for one campaign: /c/{code}. One per membership."""

    code = Varchar(length=16, unique=True, index=True)
    campaign = ForeignKey(Campaign, null=False, index=True, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    membership = ForeignKey(Membership, null=False, unique=True, on_delete=OnDelete.restrict)
    created_at = Timestamptz()
