"""Tables owned by the ads domain: publishers' ad slots, the impressions counted in them, and the
CPM earnings they make. Only server/ads/service.py writes slots and impressions, and only
server/ads/cpm.py writes impression earnings."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import BigInt, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User
from server.campaigns.tables import Campaign, Creative, Goal


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
    frequency_capped = "frequency_capped"
    rate_limited = "rate_limited"


VIEW_REASON_LABELS = {
    ViewReason.valid: "Seen (valid)",
    ViewReason.bot: "Bot or crawler user agent",
    ViewReason.frequency_capped: "Over the daily frequency cap for one visitor",
    ViewReason.rate_limited: "Too many views from one network",
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


class ImpressionEarningStatus(StrEnum):
    # Nothing to post, ever: no impression of the hour could be paid (the budget was spent), or
    # those paid cost less than a cent so far (their fractions are charged by a later hour).
    unpaid = "unpaid"
    waiting = "waiting"  # priced, but the advertiser's balance cannot cover it yet: retried each run
    approved = "approved"  # charged to the advertiser, in the publisher's pending earnings
    released = "released"  # its hold ended: the publisher's earning is available


class ImpressionEarning(Table):
    """The valid impressions of one publisher in one campaign's CPM goal during one UTC hour, and
    what they cost: written only by server/ads/cpm.py.

    Unique per (campaign, goal, hour, publisher): a unique index made by a raw migration step. The
    ledger transaction that charges it has reference ("impression_hour", id) and idempotency key
    `impression_hour:{id}:approved`. `price_minor` = `payout_minor` + `margin_minor` in minor units
    of `currency`; the rounding of a price per thousand is cumulative (see server/ads/cpm.py).
    `valid_impressions` = `paid_impressions` + `over_budget_impressions`."""

    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    goal = ForeignKey(Goal, null=False, on_delete=OnDelete.restrict)
    hour = Timestamptz()  # the start of the UTC hour the impressions were seen in
    valid_impressions = Integer()
    paid_impressions = Integer()
    over_budget_impressions = Integer(default=0)
    currency = Varchar(length=3)
    price_minor = BigInt()
    payout_minor = BigInt()
    margin_minor = BigInt()
    unpaid_reason = Text(default="")
    status = Varchar(length=10, choices=ImpressionEarningStatus)
    status_reason = Text(default="")
    hold_until = Timestamptz()
    created_at = Timestamptz()
    approved_at = Timestamptz(null=True, default=None)
    released_at = Timestamptz(null=True, default=None)
