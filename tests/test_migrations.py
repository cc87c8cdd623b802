"""The migrations create exactly the tables and columns the code declares, and none is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from server import piccolo_app
from server.core import db
from server.core.settings import ROOT
from tests.conftest import TEST_SECRET, migrate


async def _tables_and_columns() -> dict[str, set[str]]:
    first = piccolo_app.all_tables()[0]
    if db.is_sqlite():
        names = [
            r["name"]
            for r in await first.raw("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
        ]
        return {n: {c["name"] for c in await first.raw(f'PRAGMA table_info("{n}")')} for n in names}
    rows = await first.raw(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
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
