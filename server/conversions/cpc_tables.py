"""The table of CPC earnings, written only by server/conversions/cpc.py: one row per
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
