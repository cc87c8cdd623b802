"""The ledger's rules. `post` is the only writer of entries and balances; `check` finds drift.

A transaction's lines are (account, signed amount in minor units, currency). They must sum to
zero per currency (I1). Each line moves its account's cached balance with one conditional
UPDATE, so an account that may not go negative (an advertiser's balance, a publisher's payable)
cannot, even under concurrent postings on either engine (I4, I5): the transaction fails whole."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from server import db
from server.errors import Conflict, DomainError
from server.ledger.tables import (
    NEVER_NEGATIVE,
    NEVER_POSITIVE,
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTxn,
)

REFERENCE_TYPES = frozenset({"conversion", "click_hour", "impression_hour", "funding", "payout_line", "manual"})


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
class Line:
    account_id: int
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Posted:
    txn_id: int
    replayed: bool  # the idempotency key had been posted before: nothing moved this time


async def account(kind: AccountKind, currency: str, owner_id: int | None = None) -> int:
    """The id of the (owner, kind, currency) account, created empty on first use."""
    query = LedgerAccount.select(LedgerAccount.id).where(LedgerAccount.kind == kind.value,
                                                         LedgerAccount.currency == currency)
    query = query.where(LedgerAccount.owner.is_null() if owner_id is None else LedgerAccount.owner == owner_id)
    row = await query.first()
    if row is not None:
        return row["id"]
    try:
        # A savepoint: losing the race to create it must not abort the caller's transaction.
        async with db.atomic():
            rows = await LedgerAccount.insert(LedgerAccount(owner=owner_id, kind=kind.value, currency=currency,
                                                            balance_minor=0, created_at=datetime.now(UTC))
                                              ).returning(LedgerAccount.id)
            return rows[0]["id"]
    except Exception as exc:
        if not db.is_unique_violation(exc):
            raise
    row = await query.first()  # created by a concurrent posting a moment ago
    return row["id"]


def _validate(lines: Sequence[Line], reference_type: str) -> None:
    if len(lines) < 2:
        raise LedgerError("A ledger transaction needs at least two lines.")
    if reference_type not in REFERENCE_TYPES:
        raise LedgerError(f"Unknown reference type {reference_type!r}.")
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if type(line.amount_minor) is not int:  # no floats, no Decimals, no bools: minor units only
            raise LedgerError(f"Amounts are integers in minor units, not {type(line.amount_minor).__name__}.")
        if line.amount_minor == 0:
            raise LedgerError("A ledger line cannot be zero.")
        totals[line.currency] += line.amount_minor
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        raise LedgerError(f"Unbalanced transaction: lines sum to {unbalanced} instead of zero.")


async def post(*, kind: str, idempotency_key: str, lines: Sequence[Line], reference_type: str, reference_id: int,
               memo: str = "", actor_id: int | None = None, reverses: int | None = None,
               effective_at: datetime | None = None) -> Posted:
    """Post one balanced transaction, atomically, once per idempotency key."""
    _validate(lines, reference_type)
    now = datetime.now(UTC)
    async with db.atomic():  # a refused line undoes the whole posting, even inside a caller's transaction
        existing = await LedgerTxn.select(LedgerTxn.id).where(LedgerTxn.idempotency_key == idempotency_key).first()
        if existing is not None:
            return Posted(existing["id"], replayed=True)
        kinds = {r["id"]: r for r in await LedgerAccount.select(
            LedgerAccount.id, LedgerAccount.kind, LedgerAccount.currency).where(
            LedgerAccount.id.is_in(sorted({line.account_id for line in lines})))}
        rows = await LedgerTxn.insert(LedgerTxn(
            kind=kind, idempotency_key=idempotency_key, reference_type=reference_type, reference_id=reference_id,
            reverses=reverses, memo=memo, actor=actor_id, effective_at=effective_at or now, created_at=now,
        )).returning(LedgerTxn.id)
        txn_id = rows[0]["id"]
        # Accounts are updated in id order, so concurrent postings take row locks in one order.
        for line in sorted(lines, key=lambda item: item.account_id):
            acct = kinds.get(line.account_id)
            if acct is None:
                raise LedgerError(f"There is no ledger account {line.account_id}.")
            if acct["currency"] != line.currency:
                raise LedgerError(f"Account {line.account_id} holds {acct['currency']}, not {line.currency}.")
            await _move_balance(line.account_id, AccountKind(acct["kind"]), line.amount_minor)
        await LedgerEntry.insert(*[LedgerEntry(txn=txn_id, account=line.account_id, amount_minor=line.amount_minor,
                                               currency=line.currency) for line in lines])
    return Posted(txn_id, replayed=False)


async def _move_balance(account_id: int, kind: AccountKind, amount: int) -> None:
    """One atomic, conditional UPDATE: correct on SQLite and PostgreSQL alike, no read-then-write."""
    guard = ""
    if kind in NEVER_NEGATIVE:
        guard = " AND balance_minor + {} >= 0"
    elif kind in NEVER_POSITIVE:
        guard = " AND balance_minor + {} <= 0"
    # {} are bound parameters (Piccolo raw); only the constant guard text is concatenated.
    sql = "UPDATE ledger_account SET balance_minor = balance_minor + {} WHERE id = {}" + guard + " RETURNING id"  # noqa: S608
    args = (amount, account_id, amount) if guard else (amount, account_id)
    if not await LedgerAccount.raw(sql, *args):
        raise InsufficientFunds(account_id, kind.value)


async def balance(kind: AccountKind, currency: str, owner_id: int | None = None) -> int:
    query = LedgerAccount.select(LedgerAccount.balance_minor).where(LedgerAccount.kind == kind.value,
                                                                    LedgerAccount.currency == currency)
    query = query.where(LedgerAccount.owner.is_null() if owner_id is None else LedgerAccount.owner == owner_id)
    row = await query.first()
    return row["balance_minor"] if row else 0


async def reverse(original_txn_id: int, *, idempotency_key: str, memo: str = "", actor_id: int | None = None) -> Posted:
    """Post the exact opposite of a transaction (I15). Reversing twice is refused; replays are not."""
    original = await LedgerTxn.select().where(LedgerTxn.id == original_txn_id).first()
    if original is None:
        raise LedgerError(f"There is no ledger transaction {original_txn_id}.")
    replay = await LedgerTxn.select(LedgerTxn.id).where(LedgerTxn.idempotency_key == idempotency_key).first()
    if replay is not None:
        return Posted(replay["id"], replayed=True)
    if await LedgerTxn.exists().where(LedgerTxn.reverses == original_txn_id):
        raise Conflict(f"Ledger transaction {original_txn_id} has already been reversed.")
    entries = await LedgerEntry.select().where(LedgerEntry.txn == original_txn_id)
    return await post(kind=f"{original['kind']}.reversal", idempotency_key=idempotency_key,
                      lines=[Line(e["account"], -e["amount_minor"], e["currency"]) for e in entries],
                      reference_type=original["reference_type"], reference_id=original["reference_id"],
                      memo=memo, actor_id=actor_id, reverses=original_txn_id)


# --- drift ---------------------------------------------------------------------------------------


async def check() -> list[str]:
    """Every way the ledger can disagree with its invariants; empty when all hold."""
    problems: list[str] = []
    first = LedgerAccount
    for row in await first.raw(
            "SELECT txn, currency, SUM(amount_minor) AS total FROM ledger_entry GROUP BY txn, currency "
            "HAVING SUM(amount_minor) <> 0"):
        problems.append(f"I1 transaction {row['txn']} sums to {row['total']} {row['currency']}, not zero")
    for row in await first.raw(
            "SELECT t.id FROM ledger_txn t LEFT JOIN ledger_entry e ON e.txn = t.id GROUP BY t.id "
            "HAVING COUNT(e.id) < 2"):
        problems.append(f"I1 transaction {row['id']} has fewer than two entries")
    for row in await first.raw(
            "SELECT a.id, a.kind, a.balance_minor, COALESCE(SUM(e.amount_minor), 0) AS total "
            "FROM ledger_account a LEFT JOIN ledger_entry e ON e.account = a.id "
            "GROUP BY a.id, a.kind, a.balance_minor HAVING a.balance_minor <> COALESCE(SUM(e.amount_minor), 0)"):
        problems.append(f"I3 account {row['id']} ({row['kind']}) stores {row['balance_minor']} but its entries "
                        f"sum to {row['total']}")
    negative = ", ".join(f"'{k.value}'" for k in sorted(NEVER_NEGATIVE))
    for row in await first.raw(f"SELECT id, kind, balance_minor FROM ledger_account WHERE kind IN ({negative}) "  # noqa: S608
                               "AND balance_minor < 0"):
        problems.append(f"I4/I5 account {row['id']} ({row['kind']}) is negative: {row['balance_minor']}")
    positive = ", ".join(f"'{k.value}'" for k in sorted(NEVER_POSITIVE))
    for row in await first.raw(f"SELECT id, kind, balance_minor FROM ledger_account WHERE kind IN ({positive}) "  # noqa: S608
                               "AND balance_minor > 0"):
        problems.append(f"I5 account {row['id']} ({row['kind']}) is positive: {row['balance_minor']}")
    for row in await first.raw(
            "SELECT e.id, e.currency, a.currency AS account_currency FROM ledger_entry e "
            "JOIN ledger_account a ON a.id = e.account WHERE e.currency <> a.currency"):
        problems.append(f"entry {row['id']} is in {row['currency']} on an account in {row['account_currency']}")
    return problems


async def summary() -> dict[str, Any]:
    rows = await LedgerAccount.raw("SELECT kind, currency, SUM(balance_minor) AS total FROM ledger_account "
                                   "GROUP BY kind, currency ORDER BY kind, currency")
    return {"balances": rows, "transactions": await LedgerTxn.count(), "entries": await LedgerEntry.count()}
