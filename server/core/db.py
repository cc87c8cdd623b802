"""The database engine chosen by DATABASE_URL (SQLite by default, PostgreSQL in production),
and the one transaction helper every writer uses."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType
from piccolo.table import Table

log = logging.getLogger("affnet.db")

# How long a writer waits for SQLite's write lock before giving up, in seconds.
SQLITE_BUSY_TIMEOUT = 15


class _SQLiteImmediateTransaction(SQLiteTransaction):
    """BEGIN IMMEDIATE, and close the connection if BEGIN itself fails.

    Piccolo 1.38 leaks the connection (and its thread, so the process never exits) when
    BEGIN raises "database is locked"; this closes it before re-raising.
    """

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            await self.begin()
        except BaseException:
            await self.connection.close()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self


def engine_for(database_url: str) -> Engine:
    """Build a Piccolo engine from a URL: sqlite:///path or postgres[ql]://user:pw@host:port/db."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        # As in SQLAlchemy: sqlite:///relative.db and sqlite:////absolute/path.db
        path = unquote(database_url.removeprefix("sqlite:///")) or "affnet.sqlite3"
        return SQLiteEngine(path=path, timeout=SQLITE_BUSY_TIMEOUT)
    if parts.scheme in {"postgres", "postgresql"}:
        config = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "user": unquote(parts.username or "postgres"),
            "password": unquote(parts.password or "") or None,
            "database": unquote(parts.path.lstrip("/")) or "affnet",
            # JIT compiling costs ~30 ms on a report's grouped read and never pays back on the
            # short statements affnet runs (bench/report_dashboard.py).
            "server_settings": {"jit": "off"},
        }
        return PostgresEngine(config=config, extensions=())
    raise ValueError(f"DATABASE_URL must start with sqlite:/// or postgres://, not {parts.scheme or database_url!r}")


_engine: Engine | None = None


def bind(engine: Engine, tables: Iterable[type[Table]]) -> Engine:
    """Point `tables` and this module's queries at `engine` (server/piccolo_app.py: bind passes
    every affnet table; tests switch between SQLite and PostgreSQL this way)."""
    global _engine
    _engine = engine
    for table in tables:
        table._meta.db = engine
    return engine


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("server.piccolo_app.bind() has not been called")
    return _engine


def is_sqlite(eng: Engine | None = None) -> bool:
    return isinstance(eng or engine(), SQLiteEngine)


async def start(eng: Engine) -> None:
    """Open pools and set per-database pragmas; called at app and worker startup."""
    if isinstance(eng, SQLiteEngine):
        # WAL lets readers run beside the one writer; it is a property of the file.
        conn = sqlite3.connect(eng.path, timeout=SQLITE_BUSY_TIMEOUT)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
    elif isinstance(eng, PostgresEngine):
        await eng.start_connection_pool(min_size=1, max_size=10)


# How long shutdown waits for pooled connections to come back before closing them anyway.
POOL_CLOSE_TIMEOUT = 10.0


async def stop(eng: Engine) -> None:
    """Close the pool. A connection still checked out (a task that never gave it back) must not
    hang shutdown for ever: after POOL_CLOSE_TIMEOUT the pool is terminated, and said so."""
    if isinstance(eng, PostgresEngine) and eng.pool is not None:
        pool, eng.pool = eng.pool, None
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("database connections were still in use %.0f s into shutdown; closing them", POOL_CLOSE_TIMEOUT)
            pool.terminate()


@asynccontextmanager
async def transaction() -> AsyncIterator[object]:
    """A write transaction: BEGIN IMMEDIATE on SQLite (so concurrent writers queue on the busy
    timeout instead of failing), an ordinary transaction on PostgreSQL. Nested calls join the
    outer transaction."""
    eng = engine()
    if isinstance(eng, SQLiteEngine):
        txn: object = _SQLiteImmediateTransaction(engine=eng, transaction_type=TransactionType.immediate)
    else:
        txn = eng.transaction()
    async with txn as t:
        yield t


@asynccontextmanager
async def atomic() -> AsyncIterator[object]:
    """All or nothing, even inside an outer transaction: nested use takes a savepoint, so a caller
    that catches this block's exception keeps none of its writes (a plain nested transaction would
    fold into the outer one and commit the half that ran)."""
    current = engine().current_transaction.get()
    if current is None:
        async with transaction() as txn:
            yield txn
        return
    savepoint = await current.savepoint()
    try:
        yield current
    except BaseException:
        await savepoint.rollback_to()
        raise
    await savepoint.release()


async def ping() -> None:
    """Raise if the database does not answer."""
    await engine().run_ddl("SELECT 1")


def whole(value: Any) -> int:
    """A SUM or COUNT as an int: NULL (no rows) is 0, and the SUM of a BIGINT, a NUMERIC on
    PostgreSQL, arrives as an exact Decimal, never a float."""
    return int(value or 0)


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique-constraint failure on either engine."""
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    try:
        from asyncpg.exceptions import UniqueViolationError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, UniqueViolationError)


async def insert_once(table: str, columns: Sequence[str], unique: str, rows: Sequence[tuple]) -> None:
    """Store a batch of event rows (clicks, impressions) at most once per `unique` key, whatever is
    already in the table or the batch, outside any open transaction (the buffered writers' path).

    SQLite: one BEGIN IMMEDIATE transaction of INSERT OR IGNORE. PostgreSQL: the batch by COPY and,
    if any key is already there, row by row with ON CONFLICT DO NOTHING, so concurrent writers of the
    same key leave exactly one row. A batch retried after an unclear failure stores nothing twice.

    The conflict has no target on PostgreSQL, as INSERT OR IGNORE has none on SQLite: there the event
    tables are partitioned by time (migrations/…_partitions.py), so `unique` is enforced with the
    partition key (UNIQUE (click_id, clicked_at)) or by each partition (impression's offer), which a
    parent table's ON CONFLICT (column) cannot name. `unique` says which key that is; no other key of
    these tables can conflict (their ids are new). `table` and `columns` are the callers' constants,
    never input: only they go into the statement, every value is a bound parameter."""
    eng = engine()
    names = ", ".join(columns)
    if is_sqlite(eng):
        placeholders = ", ".join("?" * len(columns))
        sql = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({placeholders})"  # noqa: S608
        conn = await eng.get_connection()
        try:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.executemany(sql, rows)
            await conn.execute("COMMIT")
        finally:
            await conn.close()
        return
    async with eng.pool.acquire() as conn:
        try:
            await conn.copy_records_to_table(table, records=rows, columns=columns)
        except Exception as exc:
            if not is_unique_violation(exc):
                raise
            placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            await conn.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({placeholders}) ON CONFLICT DO NOTHING",  # noqa: S608
                rows,
            )


async def execute_many(sql: str, rows: Sequence[tuple]) -> None:
    """One statement for many rows of parameters, in the current transaction (or a new one). `sql`
    uses `?` placeholders (SQLite's); PostgreSQL gets `$1, $2, …` and asyncpg's pipelined executemany."""
    if not rows:
        return
    async with transaction() as txn:
        conn = txn.connection  # type: ignore[attr-defined]  # the transaction's own connection
        if not is_sqlite():
            parts = sql.split("?")
            sql = "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, start=1))
        await conn.executemany(sql, rows)


async def insert_rows(table: type[Table], columns: Sequence[str], rows: Sequence[tuple]) -> list[int]:
    """Insert many rows of `table` in the current transaction and return their ids, in row order.

    For thousands of rows Piccolo's per-row objects cost more than the insert itself. PostgreSQL:
    the ids are reserved from the table's sequence, then the rows are COPYed with them. SQLite: one
    executemany; the transaction holds the only write lock and an INTEGER PRIMARY KEY takes max + 1,
    so the new ids are the ones above the max read first, in order. Only column names the caller
    wrote (never user input) are joined into the statements; the values are bound."""
    if not rows:
        return []
    name = table._meta.tablename
    current = engine().current_transaction.get()
    if current is None:
        raise RuntimeError("insert_rows runs inside db.transaction()")
    conn = current.connection  # type: ignore[attr-defined]  # the transaction's own connection
    if is_sqlite():
        async with conn.execute(f"SELECT COALESCE(MAX(id), 0) AS top FROM {name}") as cursor:  # noqa: S608
            top = (await cursor.fetchone())["top"]
        marks = ", ".join("?" * len(columns))
        await conn.executemany(f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})", rows)  # noqa: S608
        async with conn.execute(f"SELECT id FROM {name} WHERE id > ? ORDER BY id", (top,)) as cursor:  # noqa: S608
            ids = [r["id"] for r in await cursor.fetchall()]
    else:
        ids = [
            r[0]
            for r in await conn.fetch(
                "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)", name, len(rows)
            )
        ]
        await conn.copy_records_to_table(
            name, records=[(i, *r) for i, r in zip(ids, rows, strict=True)], columns=["id", *columns]
        )
    if len(ids) != len(rows):
        raise RuntimeError(f"{len(rows)} rows inserted into {name}, {len(ids)} ids found")
    return ids
