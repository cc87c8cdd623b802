"""Tables owned by the ads domain: publishers' ad slots, the impressions counted in them, and the
CPM earnings they make. Only server/ads/service.py writes slots and impressions, and only
server/earnings/cpm.py writes impression earnings."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User
from server.campaigns.tables import Campaign, Creative
from server.core.i18n import _l


class SlotFormat(StrEnum):
    """What a slot shows: an IAB banner of exactly this size, or a native text ad."""

    medium_rectangle = "300x250"
    leaderboard = "728x90"
    wide_skyscraper = "160x600"
    mobile_banner = "320x50"
    native = "native"


class SlotFallback(StrEnum):
    """What a slot shows when no ad fits."""

    collapse = "collapse"  # the placeholder is hidden
    house = "house"  # the publisher's house ad: a line of text and a link, drawn by affnet
    html = "html"  # the publisher's own HTML, shown only inside the sandboxed frame (scripts never run)


class SlotStatus(StrEnum):
    active = "active"
    paused = "paused"  # shows its fallback only


class ViewReason(StrEnum):
    """Why a counted view is or is not billed (impression.reason)."""

    valid = "valid"
    bot = "bot"
    datacenter = "datacenter"
    frequency_capped = "frequency_capped"
    rate_limited = "rate_limited"


VIEW_REASON_LABELS = {
    ViewReason.valid: _l("Seen (valid)"),
    ViewReason.bot: _l("Bot or crawler user agent"),
    ViewReason.datacenter: _l("From a cloud or hosting network"),
    ViewReason.frequency_capped: _l("Over the daily frequency cap for one visitor"),
    ViewReason.rate_limited: _l("Too many views from one network"),
}


class AdSlot(Table):
    """A place on a publisher's site where affnet shows ads: <div data-affnet-slot="{public_key}">."""

    publisher = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    name = Varchar(length=120)
    format = Varchar(length=10, choices=SlotFormat)
    # Host names the slot may appear on, one per line, normalised like campaigns' allowed domains
    # (subdomains are included).
    domains = Text()
    fallback = Varchar(length=10, choices=SlotFallback, default=SlotFallback.collapse)
    house_text = Varchar(length=300, default="")
    house_url = Varchar(length=2048, default="")
    fallback_html = Text(default="")
    # In the snippet, so public by design; random, so nobody can guess another publisher's slot.
    public_key = Varchar(length=24, unique=True)
    status = Varchar(length=10, choices=SlotStatus, default=SlotStatus.active)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Impression(Table):
    """One view of an offered ad, counted once per offer (`offer` is unique) and never updated.

    Written in batches from the view beacon's buffer. `reason` is "valid" or why the view is not
    billed (ViewReason). Like clicks, no raw IP: `visitor_hash` is the
    daily keyed hash of the network and the User-Agent. Indexed by (campaign, viewed_at) and
    (slot, viewed_at) through a raw migration step."""

    offer = Varchar(length=16, unique=True)  # the offer's nonce: the unique constraint is its index
    viewed_at = Timestamptz()
    slot = ForeignKey(AdSlot, null=False, on_delete=OnDelete.restrict)
    creative = ForeignKey(Creative, null=False, on_delete=OnDelete.restrict)
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    visitor_hash = Varchar(length=32, default="")
    reason = Varchar(length=20, default="valid")
    country = Varchar(length=2, default="")  # as on clicks: from the trusted proxy's header, "" when unknown
