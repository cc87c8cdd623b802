"""The ledger's engine, private to server/ledger: balanced lines, their posting, and the SQL.

A transaction's lines are (account, signed amount in minor units, currency). They must sum to
zero per currency (I1). Each line moves its account's cached balance with one conditional
UPDATE, so an account that may not go negative (an advertiser's balance, a publisher's payable)
cannot, even under concurrent postings on either engine (I4, I5): the transaction fails whole.

Nothing outside server/ledger imports this module (an import-linter contract in pyproject.toml):
the rest of the code posts through server/ledger/postings.py, where each posting of the trade is
a named function that decides its accounts and signs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from server.core import clock, db
from server.core.errors import Conflict
from server.ledger.service import InsufficientFunds, LedgerError, Posted
from server.ledger.tables import NEVER_NEGATIVE, NEVER_POSITIVE, AccountKind, LedgerEntry, LedgerTxn

REFERENCE_TYPES = frozenset({"conversion", "click_hour", "impression_hour", "funding", "payout_line", "manual"})


class Line(NamedTuple):
    """One side of a posting. A tuple: batches build millions of them, and a frozen dataclass
    costs several times more to construct."""

    account_id: int
    amount_minor: int
    currency: str


def _validate(lines: Sequence[Line], reference_type: str) -> None:
    if len(lines) < 2:
        raise LedgerError("A ledger transaction needs at least two lines.")
    if reference_type not in REFERENCE_TYPES:
        raise LedgerError(f"Unknown reference type {reference_type!r}.")
    currency = lines[0].currency
    total = 0
    for _, amount, line_currency in lines:
        if type(amount) is not int:  # no floats, no Decimals, no bools: minor units only
            raise LedgerError(f"Amounts are integers in minor units, not {type(amount).__name__}.")
        if amount == 0:
            raise LedgerError("A ledger line cannot be zero.")
        if line_currency != currency:
            currency = None
        total += amount
    if currency is not None:  # one currency, the usual case (a batch validates thousands)
        if total:
            raise LedgerError(f"Unbalanced transaction: lines sum to { ({currency: total}) } instead of zero.")
        return
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.amount_minor
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        raise LedgerError(f"Unbalanced transaction: lines sum to {unbalanced} instead of zero.")


class Posting(NamedTuple):
    """One ledger transaction to post: balanced lines, what it is for, and its idempotency key."""

    kind: str
    idempotency_key: str
    lines: Sequence[Line]
    reference_type: str
    reference_id: int
    memo: str = ""
    actor_id: int | None = None
    reverses: int | None = None
    effective_at: datetime | None = None


async def post(
    *,
    kind: str,
    idempotency_key: str,
    lines: Sequence[Line],
    reference_type: str,
    reference_id: int,
    memo: str = "",
    actor_id: int | None = None,
    reverses: int | None = None,
    effective_at: datetime | None = None,
) -> Posted:
    """Post one balanced transaction, atomically, once per idempotency key."""
    return (
        await post_many(
            [
                Posting(
                    kind, idempotency_key, lines, reference_type, reference_id, memo, actor_id, reverses, effective_at
                )
            ]
        )
    )[0]


async def post_many(postings: Sequence[Posting]) -> list[Posted]:
    """Post many balanced transactions at once, all or nothing: the only writer of entries and balances.

    Each posting is its own ledger transaction (so every earning traces to one conversion, click
    hour or payout line: I6) and is posted once per idempotency key: a key posted before, by an
    earlier call or by a concurrent one, is replayed and moves nothing. Balances move by the net
    of the batch per account, in account-id order, each with the guard its kind needs (I4, I5):
    if any account would end below its bound, InsufficientFunds undoes the whole batch. The batch
    is atomic, so no intermediate state is ever visible; it is the net that must be within bounds.
    Bulk statements (unnest and COPY on PostgreSQL, executemany on SQLite) make a batch of
    thousands a handful of round trips."""
    for posting in postings:
        _validate(posting.lines, posting.reference_type)
    if len({p.idempotency_key for p in postings}) != len(postings):
        raise LedgerError("Each posting in a batch needs its own idempotency key.")
    if not postings:
        return []
    now = clock.now()
    async with db.atomic() as txn:
        conn = txn.connection  # type: ignore[attr-defined]  # the transaction's own connection
        sqlite = db.is_sqlite()
        keys = [p.idempotency_key for p in postings]
        # SQLite has one writer at a time, so the keys there now are all there will be; PostgreSQL
        # learns which keys were posted before (or concurrently) from INSERT … ON CONFLICT below.
        ids = await _existing_keys_sqlite(conn, keys) if sqlite else {}
        candidates = [p for p in postings if p.idempotency_key not in ids]
        fresh: list[Posting] = []
        if candidates:
            rows = [
                (
                    p.kind,
                    p.idempotency_key,
                    p.reference_type,
                    p.reference_id,
                    p.reverses,
                    p.memo,
                    p.actor_id,
                    p.effective_at or now,
                    now,
                )
                for p in candidates
            ]
            # Everything that needs no lock is done before the accounts are locked: the ids reserved
            # and the entries and balance moves built for the case where every key is new, so a
            # concurrent posting (another approval lane) waits on these accounts only for SQL.
            reserved = None if sqlite or len(rows) < BULK else await _reserve_ids(conn, len(rows))
            pairs = {(line.account_id, line.currency) for p in candidates for line in p.lines}
            entries = (
                [
                    (txn_id, line.account_id, line.amount_minor, line.currency)
                    for txn_id, p in zip(reserved, candidates, strict=True)
                    for line in p.lines
                ]
                if reserved
                else None
            )
            moves_if_all_new = _moves(candidates)
            accounts = await _accounts(conn, sqlite, sorted({account_id for account_id, _ in pairs}))
            for account_id, currency in sorted(pairs):
                acct = accounts.get(account_id)
                if acct is None:
                    raise LedgerError(f"There is no ledger account {account_id}.")
                if acct[1] != currency:
                    raise LedgerError(f"Account {account_id} holds {acct[1]}, not {currency}.")
            inserted = await (_insert_txns_sqlite(conn, rows) if sqlite else _insert_txns_pg(conn, rows, reserved))
            ids.update(inserted)
            fresh = [p for p in candidates if p.idempotency_key in inserted]
            if len(fresh) != len(candidates):  # posted before, or by a concurrent transaction: theirs stands
                ids.update(
                    await _existing_keys_pg(
                        conn, [p.idempotency_key for p in candidates if p.idempotency_key not in inserted]
                    )
                )
            all_new = len(fresh) == len(candidates) and reserved is not None and inserted.get(rows[0][1]) == reserved[0]
            moves = [
                (account_id, accounts[account_id][0], delta)
                for account_id, delta in (moves_if_all_new if len(fresh) == len(candidates) else _moves(fresh))
            ]
            await (_move_balances_sqlite(conn, moves) if sqlite else _move_balances_pg(conn, moves))
            if not all_new:
                entries = [
                    (inserted[p.idempotency_key], line.account_id, line.amount_minor, line.currency)
                    for p in fresh
                    for line in p.lines
                ]
            if sqlite:
                await conn.executemany(
                    "INSERT INTO ledger_entry (txn, account, amount_minor, currency) VALUES (?, ?, ?, ?)", entries
                )
            elif entries:
                await conn.copy_records_to_table(
                    "ledger_entry", records=entries, columns=["txn", "account", "amount_minor", "currency"]
                )
    posted_now = {p.idempotency_key for p in fresh}
    return [Posted(ids[p.idempotency_key], replayed=p.idempotency_key not in posted_now) for p in postings]


_TXN_COLUMNS = "kind, idempotency_key, reference_type, reference_id, reverses, memo, actor, effective_at, created_at"
_CHUNK = 500  # SQLite: keys per IN (...) list


async def _existing_keys_pg(conn: Any, keys: list[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT t.id, t.idempotency_key FROM unnest($1::varchar[]) AS k(key) "
        "JOIN ledger_txn t ON t.idempotency_key = k.key",
        keys,
    )
    return {r["idempotency_key"]: r["id"] for r in rows}


async def _existing_keys_sqlite(conn: Any, keys: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        # Only "?" placeholders are joined into the statement; the keys are bound parameters.
        sql = f"SELECT id, idempotency_key FROM ledger_txn WHERE idempotency_key IN ({', '.join('?' * len(chunk))})"  # noqa: S608
        async with conn.execute(sql, chunk) as cursor:
            found.update({r["idempotency_key"]: r["id"] for r in await cursor.fetchall()})
    return found


async def _accounts(conn: Any, sqlite: bool, account_ids: list[int]) -> dict[int, tuple[AccountKind, str]]:
    """Kind and currency of each account; on PostgreSQL the rows are locked in id order, so
    concurrent postings queue on the same accounts instead of deadlocking."""
    if sqlite:
        found = {}
        for i in range(0, len(account_ids), _CHUNK):
            chunk = account_ids[i : i + _CHUNK]
            sql = f"SELECT id, kind, currency FROM ledger_account WHERE id IN ({', '.join('?' * len(chunk))})"  # noqa: S608
            async with conn.execute(sql, chunk) as cursor:
                found.update({r["id"]: (AccountKind(r["kind"]), r["currency"]) for r in await cursor.fetchall()})
        return found
    rows = await conn.fetch(
        "SELECT id, kind, currency FROM ledger_account WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", account_ids
    )
    return {r["id"]: (AccountKind(r["kind"]), r["currency"]) for r in rows}


BULK = 100  # from this many postings on, PostgreSQL gets the transactions by COPY


def _moves(postings: Sequence[Posting]) -> list[tuple[int, int]]:
    """The net each account moves by, in account-id order (accounts whose net is zero left out)."""
    deltas: dict[int, int] = defaultdict(int)
    for posting in postings:
        for line in posting.lines:
            deltas[line.account_id] += line.amount_minor
    return [(account_id, delta) for account_id, delta in sorted(deltas.items()) if delta]


async def _reserve_ids(conn: Any, count: int) -> list[int]:
    """`count` transaction ids from ledger_txn's sequence (not transactional: an unused one is a gap)."""
    return [
        r[0]
        for r in await conn.fetch(
            "SELECT nextval(pg_get_serial_sequence('ledger_txn', 'id')) FROM generate_series(1, $1)", count
        )
    ]


async def _insert_txns_pg(conn: Any, rows: list[tuple], ids: list[int] | None) -> dict[str, int]:
    """The ids of the transactions inserted, by key; keys posted before are skipped (not in the result)."""
    if ids is not None:
        # With ids reserved, COPY: several times cheaper than an INSERT of arrays. A key that was
        # posted before fails the COPY whole (its savepoint rolls back), and the INSERT below,
        # which skips such keys, does the work instead. Reserved ids left unused are only a gap.
        try:
            async with conn.transaction():
                records = [(i, *r) for i, r in zip(ids, rows, strict=True)]
                await conn.copy_records_to_table(
                    "ledger_txn", records=records, columns=["id", *_TXN_COLUMNS.split(", ")]
                )
            return {r[1]: i for i, r in zip(ids, rows, strict=True)}
        except Exception as exc:
            if not db.is_unique_violation(exc):
                raise
    columns = list(zip(*rows, strict=True))
    inserted = await conn.fetch(
        f"INSERT INTO ledger_txn ({_TXN_COLUMNS}) SELECT * FROM unnest($1::varchar[], $2::varchar[], "  # noqa: S608
        "$3::varchar[], $4::bigint[], $5::bigint[], $6::text[], $7::integer[], $8::timestamptz[], "
        "$9::timestamptz[]) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key",
        *columns,
    )
    return {r["idempotency_key"]: r["id"] for r in inserted}


async def _insert_txns_sqlite(conn: Any, rows: list[tuple]) -> dict[str, int]:
    # SQLite takes one writer at a time, so nobody else can insert these keys meanwhile.
    await conn.executemany(f"INSERT INTO ledger_txn ({_TXN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)  # noqa: S608
    return await _existing_keys_sqlite(conn, [r[1] for r in rows])


def _guard(kind: AccountKind) -> str:
    if kind in NEVER_NEGATIVE:
        return ">= 0"
    if kind in NEVER_POSITIVE:
        return "<= 0"
    return ""


async def _move_balances_pg(conn: Any, moves: list[tuple[int, AccountKind, int]]) -> None:
    """One conditional UPDATE for the batch; an account missing from RETURNING broke its bound."""
    negative = ", ".join(f"'{k.value}'" for k in sorted(NEVER_NEGATIVE))
    positive = ", ".join(f"'{k.value}'" for k in sorted(NEVER_POSITIVE))
    moved = await conn.fetch(
        "UPDATE ledger_account a SET balance_minor = a.balance_minor + d.delta "  # noqa: S608  # constant kinds only
        "FROM unnest($1::bigint[], $2::bigint[]) AS d(id, delta) WHERE a.id = d.id "
        f"AND (a.kind NOT IN ({negative}) OR a.balance_minor + d.delta >= 0) "
        f"AND (a.kind NOT IN ({positive}) OR a.balance_minor + d.delta <= 0) RETURNING a.id",
        [m[0] for m in moves],
        [m[2] for m in moves],
    )
    _refuse_unmoved(moves, {r["id"] for r in moved})


async def _move_balances_sqlite(conn: Any, moves: list[tuple[int, AccountKind, int]]) -> None:
    moved = set()
    for account_id, kind, delta in moves:
        guard = _guard(kind)
        # Only the constant guard text is joined in; the amounts and ids are bound parameters.
        condition = f" AND balance_minor + ? {guard}" if guard else ""
        sql = "UPDATE ledger_account SET balance_minor = balance_minor + ? WHERE id = ?" + condition + " RETURNING id"  # noqa: S608
        async with conn.execute(sql, (delta, account_id, delta) if guard else (delta, account_id)) as cursor:
            if await cursor.fetchall():
                moved.add(account_id)
    _refuse_unmoved(moves, moved)


def _refuse_unmoved(moves: list[tuple[int, AccountKind, int]], moved: set[int]) -> None:
    for account_id, kind, _ in moves:
        if account_id not in moved:
            raise InsufficientFunds(account_id, kind.value)


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
    return await post(
        kind=f"{original['kind']}.reversal",
        idempotency_key=idempotency_key,
        lines=[Line(e["account"], -e["amount_minor"], e["currency"]) for e in entries],
        reference_type=original["reference_type"],
        reference_id=original["reference_id"],
        memo=memo,
        actor_id=actor_id,
        reverses=original_txn_id,
    )
