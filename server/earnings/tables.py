"""The table of CPC earnings, written only by server/earnings/cpc.py: one row per
publisher × campaign × goal × hour of valid clicks, and how much of it was paid."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import BigInt, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User
from server.campaigns.tables import Campaign, Goal


class ClickEarningStatus(StrEnum):
    unpaid = "unpaid"  # no click of the hour could be paid (caps or budget): nothing to post, ever
    waiting = "waiting"  # priced, but the advertiser's balance cannot cover it yet: retried each run
    approved = "approved"  # charged to the advertiser, in the publisher's pending earnings
    released = "released"  # its hold ended: the publisher's earning is available


class ClickEarning(Table):
    """The valid clicks of one publisher in one campaign's CPC goal during one UTC hour.

    Unique per (publisher, campaign, goal, hour): a unique index made by a raw step in the
    migration (Piccolo cannot declare a composite unique constraint). The ledger transaction that
    charges it has reference ("click_hour", id) and idempotency key `click_hour:{id}:approved`.

    `price_minor` = `payout_minor` + `margin_minor`, each paid click times the goal's amounts, in
    minor units of `currency` (the campaign's). `valid_clicks` = `paid_clicks` + `over_cap_clicks`
    + `over_budget_clicks`; `unpaid_reason` says, for people, why clicks went unpaid, and
    `status_reason` why the row waits."""

    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    goal = ForeignKey(Goal, null=False, on_delete=OnDelete.restrict)
    hour = Timestamptz()  # the start of the UTC hour the clicks happened in
    valid_clicks = Integer()
    paid_clicks = Integer()
    over_cap_clicks = Integer(default=0)
    over_budget_clicks = Integer(default=0)
    currency = Varchar(length=3)
    price_minor = BigInt()
    payout_minor = BigInt()
    margin_minor = BigInt()
    # Why clicks went unpaid ("3 over the daily cap of 100 clicks per publisher"); fixed when priced.
    unpaid_reason = Text(default="")
    status = Varchar(length=10, choices=ClickEarningStatus)
    status_reason = Text(default="")  # why the row waits; empty once charged
    hold_until = Timestamptz()  # the end of the hour plus the campaign's hold days
    created_at = Timestamptz()
    approved_at = Timestamptz(null=True, default=None)
    released_at = Timestamptz(null=True, default=None)


class ImpressionEarningStatus(StrEnum):
    # Nothing to post, ever: no impression of the hour could be paid (the budget was spent), or
    # those paid cost less than a cent so far (their fractions are charged by a later hour).
    unpaid = "unpaid"
    waiting = "waiting"  # priced, but the advertiser's balance cannot cover it yet: retried each run
    approved = "approved"  # charged to the advertiser, in the publisher's pending earnings
    released = "released"  # its hold ended: the publisher's earning is available


class ImpressionEarning(Table):
    """The valid impressions of one publisher in one campaign's CPM goal during one UTC hour, and
    what they cost: written only by server/earnings/cpm.py.

    Unique per (campaign, goal, hour, publisher): a unique index made by a raw migration step. The
    ledger transaction that charges it has reference ("impression_hour", id) and idempotency key
    `impression_hour:{id}:approved`. `price_minor` = `payout_minor` + `margin_minor` in minor units
    of `currency`; the rounding of a price per thousand is cumulative (see server/earnings/cpm.py).
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
