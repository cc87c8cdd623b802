"""Tables of payout periods: the schedule and minimums, batches, their lines, carry-overs, and the
changes finance made that shape batches. Written only by server/payouts (service.py, review.py,
execute.py, four_eyes.py); publishers' Connect accounts are in account_tables.py.

A period's batch exists once per currency, and a publisher's line once per batch: unique indexes
added by hand in the migration after the tables (Piccolo declares single-column uniques only)."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User


class Schedule(StrEnum):
    weekly = "weekly"
    monthly = "monthly"


class BatchStatus(StrEnum):
    prepared = "prepared"  # lines reserved in the ledger; finance reviews, holds lines
    approved = "approved"  # a second person approved exactly these lines (fingerprint)
    executing = "executing"  # transfers being made
    done = "done"  # every line ended paid, failed or held


class LineStatus(StrEnum):
    held = "held"  # finance held it: its reservation went back to the publisher's available balance
    approved = "approved"  # will be transferred (prepared lines are "approved" until a person holds them)
    submitting = "submitting"  # stored before the transfer call: a rerun re-sends with the same key
    paid = "paid"
    failed = "failed"  # Stripe refused it: money back to available
    returned = "returned"  # paid, then reversed at Stripe (transfer.reversed): money back to available


class CarryReason(StrEnum):
    below_minimum = "below_minimum"
    account_not_ready = "account_not_ready"
    on_hold = "on_hold"
    owes_more_than_earned = "owes_more_than_earned"


class PayoutSettings(Table):
    """The network's one schedule (the row with the lowest id; defaults when there is none)."""

    schedule = Varchar(length=10, default=Schedule.monthly.value, choices=Schedule)
    cutoff_weekday = Integer(default=0)  # weekly: 0 = Monday
    cutoff_day = Integer(default=1)  # monthly: 1..28
    cutoff_hour = Integer(default=0)  # UTC
    large_change_percent = Integer(default=50)  # a line this much above or below the last payout is flagged
    updated_by = ForeignKey(User, null=True, on_delete=OnDelete.restrict)
    updated_at = Timestamptz(null=True, default=None)


class PayoutMinimum(Table):
    """The network's default minimum payout in one currency, in minor units."""

    currency = Varchar(length=3, unique=True)
    minimum_minor = BigInt()
    updated_by = ForeignKey(User, null=True, on_delete=OnDelete.restrict)
    updated_at = Timestamptz(null=True, default=None)


class PublisherPayoutTerms(Table):
    """One publisher's own minimum (in one currency) and hold, set by finance."""

    publisher = ForeignKey(User, null=False, unique=True, index=True, on_delete=OnDelete.restrict)
    minimum_minor = BigInt(null=True, default=None)  # overrides the network's minimum in minimum_currency
    minimum_currency = Varchar(length=3, default="")
    on_hold = Boolean(default=False)
    hold_reason = Text(default="")
    updated_by = ForeignKey(User, null=True, on_delete=OnDelete.restrict)
    updated_at = Timestamptz(null=True, default=None)


class ChangeKind(StrEnum):
    """What a finance person did that shapes payout batches (four eyes, MONEY.md I9)."""

    schedule = "schedule"  # the schedule, cut-off or large-change flag: every batch
    network_minimum = "network_minimum"  # the network's minimum in one currency: that currency's batches
    publisher_minimum = "publisher_minimum"  # one publisher's own minimum: batches with that publisher
    publisher_hold = "publisher_hold"  # a publisher's hold placed, released or its reason changed: likewise
    line_held = "line_held"  # a line held in a batch: that batch, and the publisher's next ones in its currency


class PayoutBatch(Table):
    """One period's payouts in one currency, or an off-cycle run's; unique (period_end, currency)."""

    period_start = Timestamptz()
    period_end = Timestamptz()  # the cut-off: balances are taken as they stood then
    currency = Varchar(length=3)
    status = Varchar(length=12, default=BatchStatus.prepared.value, choices=BatchStatus)
    prepared_by = ForeignKey(User, null=True, on_delete=OnDelete.restrict)  # None: the scheduled job
    prepared_at = Timestamptz()
    last_edited_by = ForeignKey(User, null=True, on_delete=OnDelete.restrict)
    approved_by = ForeignKey(User, null=True, on_delete=OnDelete.restrict)
    approved_at = Timestamptz(null=True, default=None)
    approved_fingerprint = Varchar(length=64, default="")  # sha256 of the lines at approval; "" = not approved
    total_minor = BigInt(default=0)  # of the lines to pay (not held)
    line_count = Integer(default=0)
    held_count = Integer(default=0)
    carried_count = Integer(default=0)
    executed_at = Timestamptz(null=True, default=None)
    off_cycle = Boolean(default=False)  # prepared on demand, cut-off = that moment, not the schedule's


class PayoutLine(Table):
    """What one publisher is paid in one batch; unique (batch, publisher). Its id is the Stripe
    idempotency key of its transfer (I8)."""

    batch = ForeignKey(PayoutBatch, null=False, index=True, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    amount_minor = BigInt()  # paid: available at the cut-off less what the publisher owed
    currency = Varchar(length=3)
    available_minor = BigInt()  # the publisher's available balance at the cut-off
    netted_minor = BigInt(default=0)  # receivable settled out of it (MONEY.md I5)
    status = Varchar(length=12, default=LineStatus.approved.value, choices=LineStatus)
    attempt = Integer(default=1)
    stripe_account_id = Varchar(length=64, default="")
    stripe_transfer_id = Varchar(length=64, default="")
    error = Text(default="")
    # The worker process (host:pid) that claimed the line last: the one that paid it, once paid; on a
    # line stuck submitting, whose log to read. While a run holds the line, `lease_until` says until
    # when (renewed as it goes); past it, or empty, another worker may take the line over (execute.py).
    worker = Varchar(length=100, default="")
    lease_until = Timestamptz(null=True, default=None)
    hold_reason = Text(default="")
    first_payout = Boolean(default=False)
    large_change = Boolean(default=False)
    previous_amount_minor = BigInt(null=True, default=None)  # the publisher's last payout in this currency
    created_at = Timestamptz()
    updated_at = Timestamptz()


class PayoutCarryOver(Table):
    """A publisher left out of a period's batch, and why; their balance waits for the next period."""

    batch = ForeignKey(PayoutBatch, null=False, index=True, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    balance_minor = BigInt()  # available at the cut-off less what the publisher owed
    minimum_minor = BigInt()
    reason = Varchar(length=24, choices=CarryReason)
    created_at = Timestamptz()


class PayoutChange(Table):
    """One change by a finance person that shapes payout batches: the settings page's saves and
    holds on lines. Written by server/payouts/four_eyes.py; whoever made a change that counts for a
    batch may not approve it (four_eyes.py says which count). Only ever inserted: the record of
    who influenced what. The editors of a batch are its `line_held` rows."""

    actor = ForeignKey(User, null=False, index=True, on_delete=OnDelete.restrict)
    kind = Varchar(length=20, choices=ChangeKind)
    currency = Varchar(length=3, default="")  # "" = every currency
    publisher = ForeignKey(User, null=True, index=True, on_delete=OnDelete.restrict)  # None: every publisher
    batch = ForeignKey(PayoutBatch, null=True, index=True, on_delete=OnDelete.restrict)  # line_held: where
    summary = Text()  # what was done, as a phrase after a name: "changed Ana's minimum payout from … to …"
    created_at = Timestamptz()
