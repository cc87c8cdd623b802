"""Group commit of reported conversions: the rows of concurrent reports stored by one statement.

A postback is answered with its conversion's id, so its row must be in the database before the
answer leaves (a stronger promise than the click journal's: a conversion answered is committed,
whatever happens to the process or the machine after). One statement, one transaction and one
log flush per report made that the limit (bench/postback_ingest.py). Here each report's row joins
the batch of rows waiting; one writer task at a time inserts a whole batch in one
`INSERT … ON CONFLICT DO NOTHING RETURNING` (autocommit: all rows or none), and each report awaits
its own outcome. While one batch is being committed the next one gathers, so batches grow with the
load and a lone report waits for nothing but its own statement.

Outcomes, the same as one report alone would get from service._store:
- stored: (its row with the new id, False);
- its (campaign, txn_id) was stored before, by an earlier report or by a copy in the same batch:
  (the first report's row, True);
- None: neither (its click's first place for its goal is taken by another txn id): the caller
  goes on row by row, which decides its place or click_limit_reached;
- the batch's statement failed: BatchFailed, and the caller stores the row alone, so one bad row
  costs the others nothing and an error is answered only when the row alone fails too.

On SQLite the batches go through one connection kept open in one thread of its own (Piccolo
opens a connection, and a thread, per query there); on PostgreSQL through up to IN_FLIGHT_PG
connections of the writer's own, kept open (_PostgresWriter).

A conversion someone hears of (its advertiser or publisher has a webhook endpoint or a postback
template: the caller says so with `advertiser_id`) has its conversion.recorded events written in the
transaction that stores it: a batch with such a row is written through the engine's own transaction
instead (_write_told), its rows and the events of those it stored committed together, one
emit_many for the batch (server/conversions/announce.py). Batches without one are untouched."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from piccolo.engine.sqlite import dict_factory

from server.conversions import announce
from server.conversions.tables import Conversion
from server.core import db
from server.webhooks import events

log = logging.getLogger("affnet.conversions")

# The conversion's columns as the intake writes them, with their PostgreSQL types (for unnest).
COLUMNS = (
    ("campaign", "integer"),
    ("goal", "integer"),
    ("publisher", "integer"),
    ("link", "integer"),
    ("click_id", "varchar"),
    ("click_ordinal", "integer"),
    ("txn_id", "varchar"),
    ("sale_amount_minor", "bigint"),
    ("currency", "varchar"),
    ("advertiser_amount_minor", "bigint"),
    ("publisher_amount_minor", "bigint"),
    ("network_amount_minor", "bigint"),
    ("status", "varchar"),
    ("status_reason", "text"),
    ("source", "varchar"),
    ("clicked_at", "timestamptz"),
    ("converted_at", "timestamptz"),
    ("hold_until", "timestamptz"),
    ("created_at", "timestamptz"),
    ("held", "boolean"),
)
NAMES = tuple(name for name, _ in COLUMNS)
_NAME_LIST = ", ".join(NAMES)

# Only these constant names go into the statements; every value is bound. No conflict target: either
# unique index ((campaign, txn_id), or (click_id, goal, click_ordinal)) skips the row, as in _store.
_INSERT_PG = (
    f"INSERT INTO conversion ({_NAME_LIST}) "  # noqa: S608
    f"SELECT * FROM unnest({', '.join(f'${i}::{kind}[]' for i, (_, kind) in enumerate(COLUMNS, start=1))}) "
    "ON CONFLICT DO NOTHING RETURNING id, campaign, txn_id"
)
# The rows stored before of the keys a batch did not insert. Planned for each batch (the writer's
# connections are set to plan_cache_mode = force_custom_plan): a prepared statement goes to a
# generic plan after five runs, and one made while the table was still small (a fresh database,
# before any ANALYZE) keeps its sequential scan as the table grows: 2.5 ms a batch at 40k
# conversions in bench/postback_ingest.py, more than the whole INSERT.
_FIRSTS_PG = (
    "SELECT c.* FROM unnest($1::integer[], $2::varchar[]) AS k(campaign, txn_id) "
    "JOIN conversion c ON c.campaign = k.campaign AND c.txn_id = k.txn_id"
)
_ROW_SQLITE = "(" + ", ".join("?" * len(NAMES)) + ")"


def _insert_sqlite(rows: int, row_marks: str = _ROW_SQLITE) -> str:
    """The batch's one INSERT on SQLite, for `rows` rows (placeholders `?`, or Piccolo's `{}`)."""
    return (
        f"INSERT INTO conversion ({_NAME_LIST}) VALUES "  # noqa: S608
        + ", ".join([row_marks] * rows)
        + " ON CONFLICT DO NOTHING RETURNING id, campaign, txn_id"
    )


_FIRST_SQLITE = "SELECT * FROM conversion WHERE campaign = ? AND txn_id = ?"

MAX_BATCH_PG = 1000
MAX_BATCH_SQLITE = 500  # 20 bound values a row: well inside SQLite's 32,766
# Batches written at once on PostgreSQL: while one commits (its log flush), the next gathers and is
# written. Two, not more: each batch's rows go into the same right-hand pages of the conversion's
# indexes (id, times), so more writers at once only wait on each other's page locks on two cores,
# and batches half the size cost more per row on both sides (bench/postback_ingest.py --postgres,
# interleaved runs: 5,165 and 4,976/s with two, 4,754 and 4,794/s with four; database CPU 109-116
# against 130-131 µs a postback). SQLite has one writer whatever we do.
IN_FLIGHT_PG = 2


class BatchFailed(Exception):
    """The statement of the batch a row was in failed: nothing of the batch is stored."""


Outcome = tuple[dict[str, Any], bool] | None
Key = tuple[int, str]


def _key(row: dict[str, Any]) -> Key:
    return row["campaign"], row["txn_id"]


def _distinct(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first row of each (campaign, txn_id): a copy later in the same batch is its duplicate."""
    firsts: dict[Key, dict[str, Any]] = {}
    for row in rows:
        firsts.setdefault(_key(row), row)
    return list(firsts.values())


def _outcomes(rows: Sequence[dict[str, Any]], ids: dict[Key, int], earlier: dict[Key, dict[str, Any]]) -> list[Outcome]:
    """Each row's outcome, given the ids the statement returned and the rows stored before it of the
    keys it did not insert: the first row of an inserted key is stored and the other rows of that key
    are its duplicates; a row whose key was stored before is a duplicate of that row; the rest None."""
    outcomes: list[Outcome] = []
    stored: dict[Key, dict[str, Any]] = {}
    for row in rows:
        key = _key(row)
        if key in stored:
            outcomes.append((stored[key], True))
        elif key in ids:
            stored[key] = {**row, "id": ids[key], "approved_at": None, "released_at": None}
            outcomes.append((stored[key], False))
        elif key in earlier:
            outcomes.append((earlier[key], True))
        else:
            outcomes.append(None)
    return outcomes


class _SQLiteWriter:
    """One SQLite connection, opened with the engine's settings (Piccolo's) and used only by a
    thread of its own, so that the event loop never waits on the disk."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._path: str | None = None

    async def write(self, rows: Sequence[dict[str, Any]], kwargs: dict[str, Any]) -> list[Outcome]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="affnet-conversions")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._write, rows, kwargs)

    def _connection(self, kwargs: dict[str, Any]) -> sqlite3.Connection:
        if self._conn is not None and self._path != kwargs["database"]:
            self._close()
        if self._conn is None:
            conn = sqlite3.connect(**kwargs)  # isolation_level=None: each statement commits itself
            conn.row_factory = dict_factory
            conn.execute("PRAGMA foreign_keys = 1")
            self._conn, self._path = conn, kwargs["database"]
        return self._conn

    def _write(self, rows: Sequence[dict[str, Any]], kwargs: dict[str, Any]) -> list[Outcome]:
        try:
            conn = self._connection(kwargs)
            distinct = _distinct(rows)
            sql = _insert_sqlite(len(distinct))
            values = [row[name] for row in distinct for name in NAMES]
            ids = {(r["campaign"], r["txn_id"]): r["id"] for r in conn.execute(sql, values).fetchall()}
            earlier = {}
            for row in distinct:
                if _key(row) not in ids and (first := conn.execute(_FIRST_SQLITE, _key(row)).fetchone()):
                    earlier[_key(row)] = first
        except Exception:
            self._close()  # the next batch opens a new connection (the file may have moved back)
            raise
        return _outcomes(rows, ids, earlier)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                log.warning("closing the conversions' SQLite connection failed", exc_info=True)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
            executor.shutdown(wait=True)


class _PostgresWriter:
    """Connections of the writer's own (up to IN_FLIGHT_PG, opened with the engine's settings, as
    the SQLite writer keeps its one), not the engine's pool: a pooled connection is reset on every
    release (RESET ALL, pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *), a round trip more per batch
    and four statements for the database, and the batches would take the pool's connections from
    the requests that need them."""

    def __init__(self) -> None:
        self._idle: list[Any] = []
        self._config: dict[str, Any] | None = None

    async def write(self, eng: Any, rows: Sequence[dict[str, Any]]) -> list[Outcome]:
        if self._config is not eng.config:  # another engine (the tests swap them): its own connections
            await self.close()
            self._config = eng.config
        if self._idle:
            conn = self._idle.pop()
        else:
            conn = await eng.get_new_connection()
            try:
                await conn.execute("SET plan_cache_mode = force_custom_plan")  # see _FIRSTS_PG
            except BaseException:
                conn.terminate()
                raise
        try:
            outcomes = await _write_postgres(conn, rows)
        except BaseException:
            conn.terminate()  # it may be broken, or in the middle of a statement: the next batch opens another
            raise
        if self._config is eng.config and len(self._idle) < IN_FLIGHT_PG:
            self._idle.append(conn)
        else:
            await conn.close()
        return outcomes

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await conn.close(timeout=5)
            except Exception:  # noqa: BLE001 - closing at shutdown: the server goes on stopping
                log.warning("closing a conversions' PostgreSQL connection failed", exc_info=True)
                conn.terminate()


async def _write_postgres(conn: Any, rows: Sequence[dict[str, Any]]) -> list[Outcome]:
    # In key order: two processes' batches holding the same reports then wait on each other in one
    # order only, never in a cycle (a deadlock PostgreSQL would break after a second).
    distinct = sorted(_distinct(rows), key=_key)
    arrays = [[row[name] for row in distinct] for name in NAMES]
    ids = {(r["campaign"], r["txn_id"]): r["id"] for r in await conn.fetch(_INSERT_PG, *arrays)}
    missing = [_key(row) for row in distinct if _key(row) not in ids]
    earlier: dict[Key, dict[str, Any]] = {}
    if missing:
        campaigns, txn_ids = zip(*missing, strict=True)
        for record in await conn.fetch(_FIRSTS_PG, list(campaigns), list(txn_ids)):
            earlier[(record["campaign"], record["txn_id"])] = dict(record)
    return _outcomes(rows, ids, earlier)


async def _write_told(rows: Sequence[dict[str, Any]], advertisers: Sequence[int | None]) -> list[Outcome]:
    """A batch with rows someone hears of (their advertiser's id in `advertisers`, else None): the
    rows and the conversion.recorded events of those stored, in one transaction of the engine's."""
    async with db.transaction() as txn:
        if db.is_sqlite():
            outcomes = await _write_engine_sqlite(rows)
        else:
            conn = txn.connection  # type: ignore[attr-defined]
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")  # see _FIRSTS_PG
            outcomes = await _write_postgres(conn, rows)
        stored = [
            {**outcome[0], "advertiser_id": advertiser}
            for outcome, advertiser in zip(outcomes, advertisers, strict=True)
            if advertiser is not None and outcome is not None and not outcome[1]
        ]
        if stored:
            await announce.changed(events.CONVERSION_RECORDED, stored)
    return outcomes


async def _write_engine_sqlite(rows: Sequence[dict[str, Any]]) -> list[Outcome]:
    """_SQLiteWriter._write's statements, through the engine (in its transaction)."""
    distinct = _distinct(rows)
    sql = _insert_sqlite(len(distinct), _ROW_SQLITE.replace("?", "{}"))
    values = [row[name] for row in distinct for name in NAMES]
    ids = {(r["campaign"], r["txn_id"]): r["id"] for r in await Conversion.raw(sql, *values)}
    earlier = {}
    for row in distinct:
        if _key(row) not in ids:
            found = await Conversion.raw(_FIRST_SQLITE.replace("?", "{}"), *_key(row))
            if found:
                earlier[_key(row)] = found[0]
    return _outcomes(rows, ids, earlier)


class ConversionWriter:
    """Rows of concurrent reports, written a batch at a time by one task (see the module's doc).
    Made once per server process; `close` at shutdown (no row waits here then: each report awaits
    its own)."""

    def __init__(self, max_batch: int | None = None) -> None:
        self._max_batch = max_batch
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[Outcome], int | None]] = []
        self._writers = 0  # batches being written now
        self._sqlite = _SQLiteWriter()
        self._postgres = _PostgresWriter()
        self.batches = 0  # statements written, and the rows they carried: for the bench and tests
        self.rows = 0

    async def insert(self, row: dict[str, Any], *, advertiser_id: int | None = None) -> Outcome:
        """This row's outcome once its batch is committed; raises BatchFailed if the batch's
        statement failed (nothing of the batch is stored then). `advertiser_id`: given when someone
        hears of the conversion, whose events are then committed with it (see the module's doc)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.append((row, future, advertiser_id))
        if self._writers < (1 if db.is_sqlite() else IN_FLIGHT_PG):
            self._writers += 1
            loop.create_task(self._drain(), name="affnet-conversion-writer")
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[dict[str, Any], asyncio.Future[Outcome], int | None]] = []
        try:
            while self._waiting:
                eng = db.engine()
                sqlite = db.is_sqlite(eng)
                size = self._max_batch or (MAX_BATCH_SQLITE if sqlite else MAX_BATCH_PG)
                batch, self._waiting = self._waiting[:size], self._waiting[size:]
                rows = [row for row, _, _ in batch]
                advertisers = [advertiser for _, _, advertiser in batch]
                try:
                    if any(a is not None for a in advertisers):
                        outcomes = await _write_told(rows, advertisers)
                    elif sqlite:
                        outcomes = await self._sqlite.write(rows, eng.connection_kwargs)
                    else:
                        outcomes = await self._postgres.write(eng, rows)
                except Exception as exc:
                    log.debug("a batch of %d conversions failed; each is stored alone", len(rows), exc_info=True)
                    for _, future, _ in batch:
                        if not future.done():
                            future.set_exception(BatchFailed(str(exc)))
                else:
                    self.batches += 1
                    self.rows += len(rows)
                    for (_, future, _), outcome in zip(batch, outcomes, strict=True):
                        if not future.done():
                            future.set_result(outcome)
                batch = []
        except BaseException:
            # Cancelled (the loop closing): whoever still waits stores its row alone, or fails.
            for _, future, _ in [*batch, *self._waiting]:
                if not future.done():
                    future.set_exception(BatchFailed("the conversion writer stopped"))
            self._waiting = []
            raise
        finally:
            self._writers -= 1

    async def close(self) -> None:
        await self._sqlite.close()
        await self._postgres.close()
