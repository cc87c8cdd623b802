"""What the publisher API reads and answers: query parameters typed so the OpenAPI document states
them, and the response Structs. Money is integer minor units beside its currency."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec
from litestar.params import QueryParameter

from server.ads.tables import SlotFallback, SlotFormat
from server.campaigns import service as campaigns
from server.campaigns.tables import PayoutModel
from server.conversions.tables import ConversionStatus
from server.tracking import service as tracking
from server.tracking.classify import Reason

# --- query parameters ------------------------------------------------------------------------------

Category = StrEnum("Category", {key: key for key in campaigns.CATEGORIES})  # type: ignore[misc]


SearchText = Annotated[
    str | None, QueryParameter(description="Words in the campaign's name or description", max_length=200)
]
Sub1Filter = Annotated[str | None, QueryParameter(description="Clicks whose sub1 is exactly this", max_length=100)]
IdFilter = Annotated[int | None, QueryParameter(ge=1, le=2**31 - 1)]


class MembershipFilter(StrEnum):
    """A campaign by the publisher's standing in it: `none` is one they have not joined or applied to."""

    none = "none"
    applied = "applied"
    approved = "approved"
    invited = "invited"
    declined = "declined"
    removed = "removed"


CategoryFilter = Annotated[Category | None, QueryParameter(description="Campaigns of this category")]
ModelFilter = Annotated[PayoutModel | None, QueryParameter(description="Campaigns with a goal of this payout model")]
MembershipParam = Annotated[
    MembershipFilter | None,
    QueryParameter(description="By the publisher's membership; `none`: campaigns not joined or applied to"),
]
ReasonFilter = Annotated[Reason | None, QueryParameter(description="valid, or why a click is not billed")]
StatusFilter = Annotated[ConversionStatus | None, QueryParameter(description="Conversions in this status")]


# --- campaigns -------------------------------------------------------------------------------------


class AdvertiserOut(msgspec.Struct):
    """The advertiser's public profile (what the marketplace shows)."""

    company_name: str
    website: str


class GoalTerms(msgspec.Struct):
    name: str
    payout_model: str  # cpc, cpm (per 1,000 impressions), cpl, cpa, revshare
    # What the publisher earns per event in minor units of the campaign's currency (per 1,000
    # impressions for CPM); null for RevShare, which pays `publisher_share_bp` of each sale.
    publisher_payout_minor: int | None
    publisher_share_bp: int | None  # basis points of the sale amount (800 = 8 %), RevShare only
    terms: str  # the same in words, in the key owner's language


class CampaignOut(msgspec.Struct):
    id: int
    name: str
    description: str
    category: str
    category_label: str
    currency: str
    visibility: str  # public (join at once), approval (apply), private (by invitation)
    goals: list[GoalTerms]
    attribution_window_days: int  # conversions count this long after the click
    hold_days: int  # earnings become available this long after approval
    allowed_domains: list[str]  # a deep link may go to these hosts or their subdomains
    forwarded_subs: list[str]  # the sub-IDs passed on to the landing page under their own names
    funded: bool  # false: waiting for the advertiser's funds, takes no new publishers
    membership_status: str | None  # applied, approved, invited, declined, removed; null: not joined
    can_join: bool  # POST .../join would join, apply or accept an invitation now
    advertiser: AdvertiserOut | None
    creative_ids: list[int]  # its active creatives


class CampaignPage(msgspec.Struct):
    items: list[CampaignOut]
    next_cursor: str | None


class MembershipOut(msgspec.Struct):
    campaign_id: int
    status: str  # approved (joined: the link is ready) or applied (waiting for the advertiser)
    link_id: int | None  # the tracked link, once approved


# --- links -----------------------------------------------------------------------------------------

SubId = Annotated[str, msgspec.Meta(max_length=tracking.SUB_MAX)]


class LinkIn(msgspec.Struct):
    """The tracked URL to build on the publisher's link in a campaign they joined."""

    campaign_id: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    sub1: SubId = ""
    sub2: SubId = ""
    sub3: SubId = ""
    sub4: SubId = ""
    sub5: SubId = ""
    # A deep link: a page on one of the campaign's allowed domains (or their subdomains).
    url: Annotated[str, msgspec.Meta(max_length=2048)] = ""


class LinkOut(msgspec.Struct):
    id: int
    code: str
    campaign_id: int
    campaign_name: str
    campaign_status: str
    membership_status: str  # clicks count only while approved
    url: str  # BASE_URL/c/<code>: the link without choices
    # The link with the sub-IDs and deep link asked for: `?sub1=…&url=…`, each percent-encoded
    # (equal to `url` without any). Any sub1..sub5 or url may be appended to `url` the same way.
    tracked_url: str
    allowed_domains: list[str]


class LinkPage(msgspec.Struct):
    items: list[LinkOut]
    next_cursor: str | None


# --- clicks and conversions ------------------------------------------------------------------------


class ClickOut(msgspec.Struct):
    """One click through the publisher's link (no IP is stored, and no visitor hash is shown)."""

    id: int
    click_id: str
    clicked_at: datetime
    campaign_id: int
    link_id: int
    slot_id: int | None  # the ad slot it came through, if any
    sub1: str
    sub2: str
    sub3: str
    sub4: str
    sub5: str
    reason: str  # valid, or why it is not billed (duplicate, bot, ...)
    reason_text: str
    referrer_host: str
    ua_family: str
    country: str  # ISO 3166 alpha-2, "" when unknown


class ClickPage(msgspec.Struct):
    items: list[ClickOut]
    next_cursor: str | None


class ConversionOut(msgspec.Struct):
    """One of the publisher's conversions: their payout only (never the advertiser's price)."""

    id: int
    campaign_id: int
    campaign_name: str
    goal_name: str
    currency: str
    payout_minor: int
    status: str  # pending, approved, rejected, reversed
    status_reason: str  # why it was rejected or reversed
    source: str  # how it was reported: postback, api, pixel
    click_id: str
    sub1: str
    sub2: str
    sub3: str
    sub4: str
    sub5: str
    clicked_at: datetime
    converted_at: datetime
    hold_until: datetime


class ConversionPage(msgspec.Struct):
    items: list[ConversionOut]
    next_cursor: str | None


# --- ad slots --------------------------------------------------------------------------------------


class SlotIn(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    format: SlotFormat
    # The sites that show it: host names such as blog.example.com (each checked as the page checks them).
    domains: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    fallback: SlotFallback = SlotFallback.collapse  # what it shows when no ad fits
    house_text: Annotated[str, msgspec.Meta(max_length=300)] = ""  # fallback "house": one line
    house_url: Annotated[str, msgspec.Meta(max_length=2048)] = ""  # fallback "house": its link
    fallback_html: Annotated[str, msgspec.Meta(max_length=10_000)] = ""  # fallback "html"


class SlotOut(msgspec.Struct):
    id: int
    name: str
    format: str
    status: str  # active, paused
    domains: list[str]
    fallback: str
    public_key: str
    snippet: str  # the HTML to paste where the ad goes


class SlotPage(msgspec.Struct):
    items: list[SlotOut]
    next_cursor: str | None
