"""Tables owned by the tracking domain: tracked links and recorded clicks."""

from __future__ import annotations

from piccolo.columns import ForeignKey, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User
from server.ads.tables import AdSlot
from server.campaigns.tables import Campaign, Membership


class Link(Table):
    """A publisher's tracked link for one campaign: /c/{code}. One per membership."""

    code = Varchar(length=16, unique=True, index=True)
    campaign = ForeignKey(Campaign, null=False, index=True, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    membership = ForeignKey(Membership, null=False, unique=True, on_delete=OnDelete.restrict)
    created_at = Timestamptz()


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
    slot = ForeignKey(AdSlot, null=True, default=None, on_delete=OnDelete.restrict)
    # ISO 3166 alpha-2 from the trusted proxy's country header (GEO_COUNTRY_HEADER); "" when unknown.
    country = Varchar(length=2, default="")
