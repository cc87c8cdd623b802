"""Publishers' Stripe Connect (Express) accounts. Written only by server/payouts/connect.py.

The account's state comes from Stripe's `account.updated` webhook, never from the onboarding
return URL; `state_at` is the `created` time of the event that set it, so an older event
delivered late never overwrites a newer state (MONEY.md I11)."""

from __future__ import annotations

from piccolo.columns import Boolean, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User


class PayoutAccount(Table):
    publisher = ForeignKey(User, null=False, unique=True, index=True, on_delete=OnDelete.restrict)
    stripe_account_id = Varchar(length=64, unique=True)  # acct_…
    country = Varchar(length=2, default="")
    default_currency = Varchar(length=3, default="")
    details_submitted = Boolean(default=False)
    payouts_enabled = Boolean(default=False)
    requirements_due = Text(default="")  # Stripe's requirements.currently_due, comma-separated
    disabled_reason = Varchar(length=120, default="")
    # Stripe's fingerprints of the account's bank accounts (external_accounts, comma-separated): the
    # same bank account behind two publishers' Connect accounts has the same fingerprint
    # (server/payouts/shared.py holds both publishers).
    bank_fingerprints = Text(default="")
    state_at = Timestamptz(null=True, default=None)  # when Stripe produced the state stored here
    created_at = Timestamptz()
    updated_at = Timestamptz()
