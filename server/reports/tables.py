"""Tables owned by the reports domain: hourly rollups of the raw events, written only by
server/reports/rollup.py. Derived data: any hour can be rebuilt from clicks, impressions and
conversions at any time, so nothing here is a money record of its own."""

from __future__ import annotations

from piccolo.columns import BigInt, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User
from server.campaigns.tables import Campaign


class TrafficHour(Table):
    """Clicks and impressions of one UTC hour per publisher × campaign × sub1 × slot × country ×
    reason ("valid", or why the event is not billed).

    Unique per its key (a raw migration step) and indexed by (publisher, hour) and (campaign,
    hour) for the dashboards. `slot` is 0 for clicks on ordinary links, `country` "" when unknown;
    `currency` is the campaign's, kept here so money and counts group alike without a join."""

    hour = Timestamptz()
    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    sub1 = Varchar(length=100, default="")
    slot = Integer(default=0)
    country = Varchar(length=2, default="")
    reason = Varchar(length=20, default="valid")
    impressions = BigInt(default=0)
    clicks = BigInt(default=0)


class TrafficCampaignHour(Table):
    """TrafficHour without sub1, slot and country: per publisher × campaign × reason × hour, what
    the dashboards group by day, campaign, publisher and reason read. Rebuilt with TrafficHour,
    from it, hour by hour; far fewer rows for a big publisher (bench/report_dashboard.py)."""

    hour = Timestamptz()
    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    reason = Varchar(length=20, default="valid")
    impressions = BigInt(default=0)
    clicks = BigInt(default=0)


class TrafficSliceHour(Table):
    """A publisher's traffic per hour by one more dimension (`dim`: sub1, slot or country; `key`
    its value as text, "" when none), valid and invalid apart: what the publisher's sub-ID, slot
    and country tables read. Rebuilt with TrafficHour, from it, hour by hour."""

    hour = Timestamptz()
    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    dim = Varchar(length=10)
    key = Varchar(length=100, default="")
    clicks = BigInt(default=0)  # valid
    invalid_clicks = BigInt(default=0)
    impressions = BigInt(default=0)  # valid
    invalid_impressions = BigInt(default=0)


class ConversionHour(Table):
    """Conversions by the UTC hour they happened in (converted_at) per publisher × campaign × goal ×
    sub1 × slot × country (those of the conversion's click) × status, with their money.

    `status` is the conversion's, except that an approved conversion whose hold has ended is
    "released" (available to the publisher). Amounts are minor units of `currency`:
    price = what the advertiser pays, payout = the publisher's share, margin = the network's,
    sale = the sale amounts reported (RevShare and CPA goals that send one)."""

    hour = Timestamptz()
    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    goal = Integer()
    currency = Varchar(length=3)
    sub1 = Varchar(length=100, default="")
    slot = Integer(default=0)
    country = Varchar(length=2, default="")
    status = Varchar(length=10)
    conversions = BigInt(default=0)
    sale_minor = BigInt(default=0)
    price_minor = BigInt(default=0)
    payout_minor = BigInt(default=0)
    margin_minor = BigInt(default=0)
    # Of `conversions`, those reported by the pixel (client-side, so forgeable by anyone holding
    # a click id): a count beside the others rather than one more key, so no report changes grain.
    pixel_conversions = BigInt(default=0)


class RollupCursor(Table):
    """Where each rollup left off: the moment its last run started (`name` is the job's)."""

    name = Varchar(length=40, unique=True)
    moment = Timestamptz()


class ConvertedClick(Table):
    """What the conversion rollup reads of a click that brought a conversion (its sub1, slot, 0
    for none, and country), copied here before retention drops the raw click
    (server/reports/retention.py): an old conversion approved or reversed later is rolled up again
    with the same breakdown. The rollup prefers the click itself while it is stored."""

    click_id = Varchar(length=48, unique=True)
    sub1 = Varchar(length=100, default="")
    slot = Integer(default=0)
    country = Varchar(length=2, default="")
