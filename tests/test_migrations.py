"""The migrations create exactly the tables and columns the code declares, none is missing, each
stands on its own (no live code), and a database migrated before the squash of 2026-11-23 still works."""

from __future__ import annotations

import ast
import importlib
import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from server import piccolo_app
from server.core import db
from server.core.settings import ROOT
from server.ledger import schema as ledger_schema
from tests.conftest import TEST_SECRET, _create_pg_database, migrate

MIGRATIONS = ROOT / "migrations"
BASELINE = importlib.import_module("migrations.affnet_2026_11_23t18_30_00_000000_baseline")


async def _tables_and_columns() -> dict[str, set[str]]:
    first = piccolo_app.all_tables()[0]
    if db.is_sqlite():
        names = [
            r["name"]
            for r in await first.raw("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
        ]
        return {n: {c["name"] for c in await first.raw(f'PRAGMA table_info("{n}")')} for n in names}
    # A partition's columns are its table's (test_clicks_and_impressions_are_partitioned_by_day_on_postgresql).
    rows = await first.raw(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name NOT IN (SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid)"
    )
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(r["table_name"], set()).add(r["column_name"])
    return found


async def test_migrations_produce_exactly_the_declared_tables_and_columns(app):
    declared = {t._meta.tablename: {c._meta.db_column_name for c in t._meta.columns} for t in piccolo_app.all_tables()}
    actual = await _tables_and_columns()
    actual.pop("migration", None)  # Piccolo's own record of applied migrations
    assert actual == declared


async def test_migrating_twice_changes_nothing(app, settings):
    before = await _tables_and_columns()
    migrate(settings.database_url)
    assert await _tables_and_columns() == before


def test_no_model_change_is_missing_a_migration(tmp_path):
    """Piccolo has no check command: generate an auto migration in a copy and expect none."""
    copy = tmp_path / "repo"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".data", "__pycache__", "tests", "node_modules", ".pytest_cache"
        ),
    )
    env = {
        **os.environ,
        "PICCOLO_CONF": "server.piccolo_conf",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}",
        "AFFNET_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(copy),
    }
    before = set((copy / "migrations").iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "piccolo.main", "migrations", "new", "affnet", "--auto"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    after = set((copy / "migrations").iterdir())
    assert after == before, f"the models changed without a migration:\n{result.stdout}\n{result.stderr}"
    assert "No changes detected" in result.stdout + result.stderr, result.stdout + result.stderr


def test_migrations_import_only_piccolo_and_the_standard_library():
    """A migration means what it did when it ran: live code (server, workers) and other libraries may change."""
    allowed = {"piccolo", "__future__", *sys.stdlib_module_names}
    found = {}
    for path in sorted(MIGRATIONS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." if node.level else node.module or ""]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in allowed:
                    found.setdefault(path.name, []).append(name)
    assert found == {}


def _migrate_output(database_url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "AFFNET_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True
    )


_OWN_SEQ = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgres"])
def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each engine that this test alone uses (it rewrites the migration records)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
    else:
        url = _create_pg_database(
            request.getfixturevalue("postgres_service"), f"affnet_own_{os.getpid()}_{next(_OWN_SEQ)}"
        )
    migrate(url)
    return url


async def _sql(url: str, statement: str, *args) -> list[tuple]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
            return [tuple(r) for r in con.execute(statement.replace("$1", "?").replace("$2", "?"), args)]
    con = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await con.fetch(statement, *args)]
    finally:
        await con.close()


async def _schema(url: str) -> list[tuple]:
    if url.startswith("sqlite"):
        return await _sql(url, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
    columns = await _sql(
        url,
        "SELECT table_name, column_name, data_type, column_default, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    indexes = await _sql(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
    triggers = await _sql(
        url, "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
    )
    constraints = await _sql(
        url,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
        "ORDER BY 1",
    )
    return columns + indexes + triggers + constraints


async def _record_old_ids(url: str, old_ids: tuple[str, ...]) -> None:
    """Make the records what a database migrated before the squash holds: the old ids, not the baseline's."""
    await _sql(url, "DELETE FROM migration WHERE name = $1", BASELINE.ID)
    for name in old_ids:
        await _sql(url, "INSERT INTO migration (name, app_name) VALUES ($1, $2)", name, "affnet")


async def test_a_database_migrated_before_the_squash_records_the_baseline_and_changes_nothing(own_database, tmp_path):
    # The schema the old migrations left is the baseline's (/work/notes/migrations-note.md: dumps of both engines).
    before = await _schema(own_database)
    await _record_old_ids(own_database, BASELINE.OLD_IDS)
    result = _migrate_output(own_database, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ran here already; recorded as applied" in result.stdout
    names = {r[0] for r in await _sql(own_database, "SELECT name FROM migration")}
    assert BASELINE.ID in names and set(BASELINE.OLD_IDS) <= names
    assert await _schema(own_database) == before


async def test_a_database_with_some_of_the_old_migrations_is_refused_with_what_to_do(own_database, tmp_path):
    await _record_old_ids(own_database, BASELINE.OLD_IDS[:5])
    result = _migrate_output(own_database, tmp_path)
    assert result.returncode != 0
    assert "ran 5 of the 28 migrations of 2026-11-23" in result.stdout + result.stderr
    assert ".data/affnet.sqlite3" in result.stdout + result.stderr


def test_the_test_wipe_puts_back_the_ledger_triggers_the_migrations_made(tmp_path):
    """tests/conftest.py's wipe lifts the append-only triggers on SQLite with live code
    (server/ledger/schema.py) and puts them back: what it puts back must be what the baseline made."""
    path = tmp_path / "wipe.sqlite3"
    migrate(f"sqlite:///{path}")
    triggers = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'ledger_%' ORDER BY name"
    with sqlite3.connect(path) as con:
        before = con.execute(triggers).fetchall()
        for ddl in [*ledger_schema.drop_append_only_ddl(sqlite=True), *ledger_schema.append_only_ddl(sqlite=True)]:
            con.execute(ddl)
        assert con.execute(triggers).fetchall() == before
    assert len(before) == 5


PARTITIONS = importlib.import_module("migrations.affnet_2026_12_05t09_00_00_000000_partitions")
EVENT_FKS = importlib.import_module("migrations.affnet_2026_12_05t14_00_00_000000_event_fks")


async def _partitioning(url: str) -> dict[str, tuple[str, list[str]]]:
    """Each partitioned table: its partition key, and its partitions' names."""
    keys = await _sql(
        url,
        "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid",
    )
    children = await _sql(
        url,
        "SELECT p.relname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent ORDER BY 2",
    )
    return {table: (key, [child for parent, child in children if parent == table]) for table, key in keys}


@pytest.mark.parametrize("engine", ["postgres"])
async def test_clicks_and_impressions_are_partitioned_by_day_on_postgresql(engine, postgres_service):
    url = _create_pg_database(postgres_service, f"affnet_parts_{os.getpid()}_{next(_OWN_SEQ)}")
    migrate(url)
    found = await _partitioning(url)
    assert {t: key for t, (key, _) in found.items()} == {
        "click": "RANGE (clicked_at)",
        "impression": "RANGE (viewed_at)",
    }
    today = datetime.now(UTC).date()
    for table in ("click", "impression"):
        names = found[table][1]
        assert f"{table}_default" in names
        for n in range(-1, PARTITIONS.AHEAD_DAYS + 1):
            assert f"{table}_p{today + timedelta(days=n):%Y%m%d}" in names
        columns = await _sql(
            url,
            "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns "
            "WHERE table_name = ANY($1) GROUP BY table_name",
            [table, *names],
        )
        assert len({tuple(c) for _, c in columns}) == 1  # every partition has its table's columns
    keys = await _sql(
        url,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid IN "
        "('click'::regclass, 'impression'::regclass) AND contype IN ('p', 'u') ORDER BY 1",
    )
    assert keys == [
        ("click_click_id_key", "UNIQUE (click_id, clicked_at)"),
        ("click_pkey", "PRIMARY KEY (id, clicked_at)"),
        ("impression_pkey", "PRIMARY KEY (id, viewed_at)"),
    ]
    # No foreign keys on the event tables: each would look its parent up for every inserted row.
    assert await _event_foreign_keys(url) == []
    # A view's offer is unique in each partition, DEFAULT included.
    offers = await _sql(url, "SELECT tablename FROM pg_indexes WHERE indexdef LIKE 'CREATE UNIQUE INDEX % (offer)'")
    assert {t for (t,) in offers} == {n for n in found["impression"][1]}


async def _row_counts(url: str) -> tuple:
    return tuple(
        [
            (await _sql(url, f"SELECT COUNT(*), COALESCE(SUM(id), 0), MIN({key}), MAX({key}) FROM {table}"))[0]  # noqa: S608
            for table, key in (("click", "clicked_at"), ("impression", "viewed_at"))
        ]
    )


_FILL = {"integer": "1", "bigint": "1", "boolean": "false", "json": "'{}'", "jsonb": "'{}'"}


async def _parents(url: str) -> None:
    """Row 1 of each table clicks and impressions refer to (their own references unchecked)."""
    con = await asyncpg.connect(url)
    try:
        await con.execute("SET session_replication_role = replica")
        for table in ("app_user", "campaign", "link", "ad_slot", "creative"):
            required = await con.fetch(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 "
                "AND is_nullable = 'NO' AND column_default IS NULL AND column_name <> 'id'",
                table,
            )
            names = ", ".join(["id", *(r["column_name"] for r in required)])
            values = ", ".join(
                ["1", *(_FILL.get(r["data_type"], "now()" if "time" in r["data_type"] else "'x'") for r in required)]
            )
            await con.execute(f"INSERT INTO {table} ({names}) VALUES ({values})")  # noqa: S608
    finally:
        await con.close()


async def _sql_all(url: str, statements: list[str]) -> None:
    for statement in statements:
        await _sql(url, statement)


def _back_before_partitions(url: str) -> None:
    """The migrations backwards to before the partitions (the partitions' and every later one)."""
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": TEST_SECRET, "PICCOLO_CONF": "server.piccolo_conf"}
    back = [sys.executable, "-m", "piccolo.main", "migrations", "backwards", "affnet", PARTITIONS.ID]
    result = subprocess.run(back, cwd=ROOT, env=env, input="y\n", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for migration in (PARTITIONS, EVENT_FKS):
        assert f"{migration.ID} [backwards]... ok" in result.stdout, result.stdout + result.stderr


async def _event_foreign_keys(url: str) -> list[tuple[str, str]]:
    return await _sql(
        url,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid IN "
        "('click'::regclass, 'impression'::regclass) AND contype = 'f' ORDER BY 1",
    )


@pytest.mark.parametrize("engine", ["postgres"])
async def test_partitioning_keeps_existing_rows_and_going_back_makes_plain_tables(engine, postgres_service, tmp_path):
    url = _create_pg_database(postgres_service, f"affnet_parts_{os.getpid()}_{next(_OWN_SEQ)}")
    migrate(url)
    _back_before_partitions(url)
    assert await _partitioning(url) == {}
    assert {name for name, _ in await _event_foreign_keys(url)} == {
        f"{table}_{column}_fkey" for table, columns in EVENT_FKS.FKS.items() for column in columns
    }
    await _parents(url)
    # Events of three days a year ago, and a click in a day the migration makes no partition for ahead.
    await _sql_all(
        url,
        [
            "INSERT INTO click (click_id, clicked_at, link, campaign, publisher) SELECT 'c' || n, "
            "'2025-06-01 23:00+00'::timestamptz + n * interval '1 hour', 1, 1, 1 FROM generate_series(1, 30) n",
            "INSERT INTO impression (offer, viewed_at, slot, creative, campaign, publisher) SELECT 'o' || n, "
            "'2025-06-01 23:30+00'::timestamptz + n * interval '1 hour', 1, 1, 1, 1 FROM generate_series(1, 30) n",
        ],
    )
    before = await _row_counts(url)
    migrate(url)
    assert await _row_counts(url) == before
    parts = await _partitioning(url)
    for table in ("click", "impression"):
        assert {f"{table}_p20250602", f"{table}_p20250603"} <= set(parts[table][1])
        in_default = await _sql(url, f"SELECT COUNT(*) FROM {table}_default")  # noqa: S608
        assert in_default == [(0,)]
    # The sequence goes on where the rows left it; a click id stays unique with its time.
    await _sql_all(
        url,
        ["INSERT INTO click (click_id, clicked_at, link, campaign, publisher) VALUES ('new', now(), 1, 1, 1)"],
    )
    assert await _sql(url, "SELECT id FROM click WHERE click_id = 'new'") == [(31,)]
    with pytest.raises(asyncpg.UniqueViolationError):
        await _sql_all(
            url,
            [
                "INSERT INTO click (click_id, clicked_at, link, campaign, publisher) "
                "SELECT click_id, clicked_at, 1, 1, 1 FROM click WHERE click_id = 'c1'"
            ],
        )
    _back_before_partitions(url)
    assert await _partitioning(url) == {}
    assert (await _sql(url, "SELECT COUNT(*) FROM click"))[0][0] == 31
