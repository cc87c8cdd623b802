"""Tables owned by the conversions domain; written only by its modules: service.py (intake),
approval.py (approval and release), review.py and csv_upload.py (advertisers' decisions and
re-pricing), reversal.py (undoing approvals), cpc.py (click earnings, cpc_tables.py), and flags.py
(conversion_flag and conversion_rule_setting: the fraud rules' holds, their review and tuning)."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User
from server.campaigns.tables import Campaign, Goal, Link


class ConversionStatus(StrEnum):
    pending = "pending"  # recorded, waiting for its hold to end (or the advertiser's decision)
    approved = "approved"  # charged to the advertiser, earned by the publisher
    rejected = "rejected"  # refused by the advertiser before approval
    reversed = "reversed"  # undone after approval


class ConversionSource(StrEnum):
    """How a conversion was reported. Only `pixel` is client-side (fired from the visitor's
    browser, so anyone with a click id can fire it): review and reports show it apart."""

    postback = "postback"
    api = "api"
    pixel = "pixel"


class Conversion(Table):
    """One sale or lead an advertiser reported, attributed to the publisher of its click.

    Unique per (campaign, txn_id) and indexed by (campaign, status) and by time for caps:
    indexes made by a raw step in the migrations (a composite unique index cannot be declared
    in Piccolo, nor added as a constraint to an existing SQLite table).

    Amounts are minor units of `currency` (the campaign's): the advertiser's price is the
    publisher's payout plus the network's margin, split by server/core/money.py."""

    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    goal = ForeignKey(Goal, null=False, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    link = ForeignKey(Link, null=False, on_delete=OnDelete.restrict)
    click_id = Varchar(length=48)
    # Which of its click's allowed conversions of this goal it is (1, 2, … up to the goal's
    # conversions_per_click): unique per (click_id, goal, click_ordinal), so two reports racing
    # for the last one cannot both take it, on either engine.
    click_ordinal = Integer(default=1)
    txn_id = Varchar(length=100)
    sale_amount_minor = BigInt(null=True, default=None)  # as reported, any goal; RevShare prices by it; NULL: none sent
    currency = Varchar(length=3)
    advertiser_amount_minor = BigInt()
    publisher_amount_minor = BigInt()
    network_amount_minor = BigInt()
    status = Varchar(length=10, choices=ConversionStatus, default=ConversionStatus.pending)
    status_reason = Text(default="")
    source = Varchar(length=10, choices=ConversionSource)
    clicked_at = Timestamptz()
    converted_at = Timestamptz()
    hold_until = Timestamptz()
    created_at = Timestamptz()
    approved_at = Timestamptz(null=True, default=None)  # charged to the advertiser (ledger)
    released_at = Timestamptz(null=True, default=None)  # the publisher's earning became available
    # Set by a database trigger on every insert and update (whoever writes), so the reports'
    # rollup finds the hours whose conversions changed (server/reports/rollup.py).
    changed_at = Timestamptz(null=True, default=None)
    # Held by a fraud rule (server/conversions/rules.py) at intake, in the same row as the report so
    # no job can approve it in between: never approved (by the job or by hand) nor paid while held.
    # Its open conversion_flag rows say why; releasing the last one clears this.
    held = Boolean(default=False)


class FlagRule(StrEnum):
    """Why a conversion is held: the codes the review queue, the API and the README name."""

    too_fast = "too_fast"  # statistically too fast for its campaign, or below the network's floor
    rate_anomaly = "rate_anomaly"  # the publisher's conversions (or conversion rate) today far above their baseline
    self_conversion = "self_conversion"  # the click's visitor is the publisher (their own session's visitor hash)


class PublisherRule(StrEnum):
    """Why a publisher (all their conversions) is held: publisher_hold.rule."""

    shared_payout_account = "shared_payout_account"  # their payout bank account is another publisher's too


class FlagDecision(StrEnum):
    open = ""  # waiting for a reviewer: the conversion is held
    released = "released"  # a reviewer found it genuine: back to the ordinary approval flow
    rejected = "rejected"  # a reviewer found it fraudulent: the conversion is rejected, its reason shown


class ConversionFlag(Table):
    """One rule's finding on one conversion, with its evidence (JSON: the rule's figures and
    thresholds) and the reviewer's decision. Campaign and publisher are copied from the conversion
    so the queue filters by owner without a join through it."""

    conversion = ForeignKey(Conversion, null=False, on_delete=OnDelete.restrict)
    campaign = ForeignKey(Campaign, null=False, on_delete=OnDelete.restrict)
    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    rule = Varchar(length=32)  # a FlagRule (no choices in the schema: a new rule needs no migration)
    evidence = Text(default="{}")
    created_at = Timestamptz()
    decision = Varchar(length=10, default="")  # a FlagDecision
    decided_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.restrict)
    decided_at = Timestamptz(null=True, default=None)
    reason = Text(default="")


class ConversionRuleSetting(Table):
    """A fraud rule's knob (server/conversions/rules.py: KNOBS) changed from its default, for one
    campaign (set by its advertiser) or network-wide (campaign NULL, set by an admin). A campaign's
    value wins over the network's, which wins over the default."""

    campaign = ForeignKey(Campaign, null=True, default=None, on_delete=OnDelete.restrict)
    name = Varchar(length=48)
    value = Integer()
    updated_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.restrict)
    updated_at = Timestamptz()


class PublisherVisitor(Table):
    """A visitor hash (server/tracking/visitor.py: the day's keyed hash of the /24 or /48 and the
    User-Agent) a publisher's logged-in session had on the day of `seen_at`: the self_conversion
    rule (server/conversions/selfcheck.py) compares a click's visitor hash with these. Unique per
    (publisher, visitor_hash) (a raw index in the migration); hashes of two days never match, so rows
    older than the attribution windows are of no use and may be deleted."""

    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    visitor_hash = Varchar(length=32)
    seen_at = Timestamptz()


class PublisherHold(Table):
    """A publisher held by a publisher-level rule (PublisherRule), with its evidence (JSON) and the
    reviewer's decision (a FlagDecision). While one is open none of the publisher's conversions is
    approved (so nothing of theirs is charged or earned) and no payout batch pays them."""

    publisher = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    rule = Varchar(length=32)
    evidence = Text(default="{}")
    created_at = Timestamptz()
    decision = Varchar(length=10, default="")
    decided_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.restrict)
    decided_at = Timestamptz(null=True, default=None)
    reason = Text(default="")
