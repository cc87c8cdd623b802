"""Tables of the ledger. Only server/ledger/service.py:post writes entries and balances.

Every account's balance is the sum of its entries (cached in `balance_minor`, changed only in the
same database transaction as the entries: MONEY.md I3). Entries and transactions are never
updated or deleted (I2: triggers refuse it); a correction is a reversing transaction."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import BigInt, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from server.accounts.tables import User


class AccountKind(StrEnum):
    """Signs: a balance is the sum of its entries, and all accounts together sum to zero."""

    advertiser_balance = "advertiser_balance"  # prepaid, unspent: >= 0
    publisher_pending = "publisher_pending"  # earned, in its hold period: >= 0
    publisher_available = "publisher_available"  # payable: >= 0
    publisher_receivable = "publisher_receivable"  # clawed back after payout, owed by the publisher: <= 0
    network_revenue = "network_revenue"  # the network's margin
    stripe_clearing = "stripe_clearing"  # money at Stripe: negative while it holds funds for the network
    payouts_in_transit = "payouts_in_transit"  # reserved for a payout line until Stripe confirms: >= 0
    # Stripe's processing fees on advertisers' top-ups, a cost the network absorbs: <= 0 as it grows
    # (like stripe_clearing, money out of the network's pocket is negative); not bounded.
    processing_fees = "processing_fees"
    # Refunded or disputed funding the advertiser's balance could no longer cover, owed by the
    # advertiser: <= 0; their next funding pays it off first (server/billing/service.py).
    advertiser_receivable = "advertiser_receivable"
    # VAT invoiced to advertisers on their top-ups, owed to the tax authorities: >= 0. Each invoice adds
    # its VAT, each credit note takes its share back; `ledger check` ties it to the documents' VAT.
    vat_payable = "vat_payable"


NEVER_NEGATIVE = frozenset(
    {
        AccountKind.advertiser_balance,
        AccountKind.publisher_pending,
        AccountKind.publisher_available,
        AccountKind.payouts_in_transit,
        AccountKind.vat_payable,
    }
)
NEVER_POSITIVE = frozenset({AccountKind.publisher_receivable, AccountKind.advertiser_receivable})
OWNED_BY = {
    AccountKind.advertiser_balance: "advertiser",
    AccountKind.publisher_pending: "publisher",
    AccountKind.publisher_available: "publisher",
    AccountKind.publisher_receivable: "publisher",
    AccountKind.network_revenue: None,
    AccountKind.stripe_clearing: None,
    AccountKind.payouts_in_transit: None,
    AccountKind.processing_fees: None,
    AccountKind.advertiser_receivable: "advertiser",
    AccountKind.vat_payable: None,
}


class LedgerAccount(Table):
    """One (owner, kind, currency); unique through an expression index in the migrations."""

    owner = ForeignKey(User, null=True, on_delete=OnDelete.restrict)  # None: the network's own
    kind = Varchar(length=32, choices=AccountKind)
    currency = Varchar(length=3)
    balance_minor = BigInt(default=0)
    created_at = Timestamptz()


class LedgerTxn(Table):
    kind = Varchar(length=40)
    # Posting the same key twice returns the first transaction: a retry never moves money twice.
    idempotency_key = Varchar(length=200, unique=True)
    # What the money movement is for (conversion, click_hour, impression_hour, funding,
    # payout_line, manual): every earning traces back to one (I6).
    reference_type = Varchar(length=20)
    reference_id = BigInt()
    reverses = BigInt(null=True, default=None)  # the transaction this one undoes
    memo = Text(default="")
    actor = ForeignKey(User, null=True, on_delete=OnDelete.restrict)
    effective_at = Timestamptz()
    created_at = Timestamptz()


class LedgerEntry(Table):
    txn = ForeignKey(LedgerTxn, null=False, index=True, on_delete=OnDelete.restrict)
    account = ForeignKey(LedgerAccount, null=False, index=True, on_delete=OnDelete.restrict)
    amount_minor = BigInt()
    currency = Varchar(length=3)
