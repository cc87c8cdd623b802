"""The ledger's public side: its accounts and balances, its errors, and `check`, which finds drift.

Money moves only through server/ledger/postings.py (each posting of the trade, balanced by
construction), which posts through the private engine (server/ledger/engine.py): the only writer
of entries and balances."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.core import clock, db
from server.core.errors import Conflict, DomainError
from server.ledger.tables import (
    NEVER_NEGATIVE,
    NEVER_POSITIVE,
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTxn,
)

# The table each earning's reference names: `check` reports earnings that trace nowhere (I6).
EARNING_SOURCES = {"conversion": "conversion", "click_hour": "click_earning", "impression_hour": "impression_earning"}


class LedgerError(DomainError):
    status_code = 422
    code = "ledger_rejected"


class InsufficientFunds(Conflict):
    code = "insufficient_funds"

    def __init__(self, account_id: int, kind: str) -> None:
        super().__init__(f"The {kind.replace('_', ' ')} (account {account_id}) cannot cover this.")
        self.account_id = account_id
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Posted:
    txn_id: int
    replayed: bool  # the idempotency key had been posted before: nothing moved this time


async def account(kind: AccountKind, currency: str, owner_id: int | None = None) -> int:
    """The id of the (owner, kind, currency) account, created empty on first use."""
    query = LedgerAccount.select(LedgerAccount.id).where(
        LedgerAccount.kind == kind.value, LedgerAccount.currency == currency
    )
    query = query.where(LedgerAccount.owner.is_null() if owner_id is None else LedgerAccount.owner == owner_id)
    row = await query.first()
    if row is not None:
        return row["id"]
    try:
        # A savepoint: losing the race to create it must not abort the caller's transaction.
        async with db.atomic():
            rows = await LedgerAccount.insert(
                LedgerAccount(
                    owner=owner_id, kind=kind.value, currency=currency, balance_minor=0, created_at=clock.now()
                )
            ).returning(LedgerAccount.id)
            return rows[0]["id"]
    except Exception as exc:
        if not db.is_unique_violation(exc):
            raise
    row = await query.first()  # created by a concurrent posting a moment ago
    return row["id"]


async def accounts(kind: AccountKind, currency: str, owner_ids: Sequence[int]) -> dict[int, int]:
    """The (kind, currency) account of each owner, by owner id, creating the missing ones: two
    statements however many owners (a batch of approvals touches hundreds of publishers)."""
    wanted = sorted(set(owner_ids))
    found: dict[int, int] = {}
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        rows = await LedgerAccount.select(LedgerAccount.id, LedgerAccount.owner).where(
            LedgerAccount.kind == kind.value, LedgerAccount.currency == currency, LedgerAccount.owner.is_in(chunk)
        )
        found.update({r["owner"]: r["id"] for r in rows})
    for owner_id in wanted:
        if owner_id not in found:
            found[owner_id] = await account(kind, currency, owner_id)
    return found


_CHUNK = 500  # owners per IN (...) list


async def balance(kind: AccountKind, currency: str, owner_id: int | None = None) -> int:
    query = LedgerAccount.select(LedgerAccount.balance_minor).where(
        LedgerAccount.kind == kind.value, LedgerAccount.currency == currency
    )
    query = query.where(LedgerAccount.owner.is_null() if owner_id is None else LedgerAccount.owner == owner_id)
    row = await query.first()
    return row["balance_minor"] if row else 0


async def balances(kind: AccountKind, currency: str, owner_ids: Sequence[int]) -> dict[int, int]:
    """The (kind, currency) balance of each owner, by owner id (0 for an owner with no account yet):
    one statement per 500 owners, where `balance` would take one each."""
    wanted = sorted(set(owner_ids))
    found = dict.fromkeys(wanted, 0)
    for i in range(0, len(wanted), _CHUNK):
        rows = await LedgerAccount.select(LedgerAccount.owner, LedgerAccount.balance_minor).where(
            LedgerAccount.kind == kind.value,
            LedgerAccount.currency == currency,
            LedgerAccount.owner.is_in(wanted[i : i + _CHUNK]),
        )
        found.update({r["owner"]: r["balance_minor"] for r in rows})
    return found


async def check() -> list[str]:
    """Every way the ledger can disagree with its invariants; empty when all hold."""
    problems: list[str] = []
    first = LedgerAccount
    for row in await first.raw(
        "SELECT txn, currency, SUM(amount_minor) AS total FROM ledger_entry GROUP BY txn, currency "
        "HAVING SUM(amount_minor) <> 0"
    ):
        problems.append(f"I1 transaction {row['txn']} sums to {row['total']} {row['currency']}, not zero")
    for row in await first.raw(
        "SELECT t.id FROM ledger_txn t LEFT JOIN ledger_entry e ON e.txn = t.id GROUP BY t.id HAVING COUNT(e.id) < 2"
    ):
        problems.append(f"I1 transaction {row['id']} has fewer than two entries")
    for row in await first.raw(
        "SELECT a.id, a.kind, a.balance_minor, COALESCE(SUM(e.amount_minor), 0) AS total "
        "FROM ledger_account a LEFT JOIN ledger_entry e ON e.account = a.id "
        "GROUP BY a.id, a.kind, a.balance_minor HAVING a.balance_minor <> COALESCE(SUM(e.amount_minor), 0)"
    ):
        problems.append(
            f"I3 account {row['id']} ({row['kind']}) stores {row['balance_minor']} but its entries "
            f"sum to {row['total']}"
        )
    negative = ", ".join(f"'{k.value}'" for k in sorted(NEVER_NEGATIVE))
    for row in await first.raw(
        f"SELECT id, kind, balance_minor FROM ledger_account WHERE kind IN ({negative}) "  # noqa: S608
        "AND balance_minor < 0"
    ):
        problems.append(f"I4/I5 account {row['id']} ({row['kind']}) is negative: {row['balance_minor']}")
    positive = ", ".join(f"'{k.value}'" for k in sorted(NEVER_POSITIVE))
    for row in await first.raw(
        f"SELECT id, kind, balance_minor FROM ledger_account WHERE kind IN ({positive}) "  # noqa: S608
        "AND balance_minor > 0"
    ):
        problems.append(f"I5 account {row['id']} ({row['kind']}) is positive: {row['balance_minor']}")
    for row in await first.raw(
        "SELECT e.id, e.txn, e.account FROM ledger_entry e LEFT JOIN ledger_txn t ON t.id = e.txn "
        "LEFT JOIN ledger_account a ON a.id = e.account WHERE t.id IS NULL OR a.id IS NULL"
    ):
        problems.append(
            f"I6 entry {row['id']} points at a missing transaction {row['txn']} or account {row['account']}"
        )
    for reference_type, table in EARNING_SOURCES.items():
        # Constant names from EARNING_SOURCES only: nothing supplied by a user reaches this statement.
        for row in await first.raw(
            f"SELECT t.id, t.reference_id FROM ledger_txn t LEFT JOIN {table} r ON r.id = t.reference_id "  # noqa: S608
            f"WHERE t.reference_type = '{reference_type}' AND r.id IS NULL"
        ):
            problems.append(
                f"I6 transaction {row['id']} is for {reference_type} {row['reference_id']}, which does not exist"
            )
    for row in await first.raw(
        "SELECT e.id, e.currency, a.currency AS account_currency FROM ledger_entry e "
        "JOIN ledger_account a ON a.id = e.account WHERE e.currency <> a.currency"
    ):
        problems.append(f"entry {row['id']} is in {row['currency']} on an account in {row['account_currency']}")
    problems += await _vat_against_documents()
    return problems


async def _vat_against_documents() -> list[str]:
    """The VAT the ledger owes (vat_payable) is the VAT of the invoices less the credit notes issued to
    advertisers (server/invoicing), per currency: every VAT movement is posted with its document."""
    owed = {
        r["currency"]: db.whole(r["total"])
        for r in await LedgerAccount.raw(
            "SELECT currency, SUM(balance_minor) AS total FROM ledger_account WHERE kind = 'vat_payable' "
            "GROUP BY currency"
        )
    }
    invoiced = {
        r["currency"]: db.whole(r["total"])
        for r in await LedgerAccount.raw(
            "SELECT currency, SUM(vat_minor) AS total FROM document WHERE kind IN ('invoice', 'credit_note') "
            "GROUP BY currency"
        )
    }
    return [
        f"VAT: the ledger owes {owed.get(c, 0)} {c} of VAT (vat_payable), the invoices and credit notes "
        f"say {invoiced.get(c, 0)}"
        for c in sorted(set(owed) | set(invoiced))
        if owed.get(c, 0) != invoiced.get(c, 0)
    ]


async def summary() -> dict[str, Any]:
    rows = await LedgerAccount.raw(
        "SELECT kind, currency, SUM(balance_minor) AS total FROM ledger_account "
        "GROUP BY kind, currency ORDER BY kind, currency"
    )
    return {"balances": rows, "transactions": await LedgerTxn.count(), "entries": await LedgerEntry.count()}
