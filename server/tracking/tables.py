"""Tables owned by the tracking domain: recorded clicks (a membership's link is campaigns')."""

from __future__ import annotations

from piccolo.columns import ForeignKey, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.reference import LazyTableReference
from piccolo.table import Table

from server.accounts.tables import User
from server.campaigns.tables import Campaign, Link

# Ads build on tracking (their clicks are tracked clicks), so the slot an ad click came through
# is named, not imported: a foreign key in the database that points up the domain order.
AD_SLOT = LazyTableReference("AdSlot", module_path="server.ads.tables")


class Click(Table):
    """One visit through a tracked link, valid or invalid (with its reason). Never updated.

    No raw IP is ever stored: `visitor_hash` is a keyed hash of the truncated IP and user agent
    under a salt that rotates daily."""

    click_id = Varchar(length=48, unique=True)  # the unique constraint is its index
    # Indexed together with campaign and with publisher (composite indexes made by a raw step
    # in the migrations): every index is paid for on each of millions of inserts.
    clicked_at = Timestamptz()
    link = ForeignKey(Link, null=False, on_delete=OnDelete.restrict)
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    sub1 = Varchar(length=100, default="")
    sub2 = Varchar(length=100, default="")
    sub3 = Varchar(length=100, default="")
    sub4 = Varchar(length=100, default="")
    sub5 = Varchar(length=100, default="")
    referrer_host = Varchar(length=255, default="")
    ua_family = Varchar(length=32, default="")
    visitor_hash = Varchar(length=32, default="")
    # "valid", or why the click is not billed (server/tracking/classify.py: Reason).
    reason = Varchar(length=20, default="valid")
    # The ad slot (server/ads) whose signed offer the click carried, valid or not; null for
    # ordinary tracked links. Indexed with clicked_at only where set (a raw migration step), so
    # clicks from links pay nothing for it.
    slot = ForeignKey(AD_SLOT, null=True, default=None, on_delete=OnDelete.restrict)
    # ISO 3166 alpha-2 from the trusted proxy's country header (GEO_COUNTRY_HEADER); "" when unknown.
    country = Varchar(length=2, default="")
