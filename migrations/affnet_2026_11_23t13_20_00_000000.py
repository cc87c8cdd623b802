"""Ledger entries without per-row foreign keys on PostgreSQL, and accounts that can never be
deleted (server/ledger/schema.py says why, and what keeps the guarantee)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

from server.ledger import schema

ID = "2026-11-23T13:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "ledger: entries without per-row foreign keys on PostgreSQL; accounts never deleted"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def forwards_ddl():
        engine = engine_finder()
        sqlite = isinstance(engine, SQLiteEngine)
        for ddl in schema.append_only_ddl(sqlite):  # now also refuses deleting an account
            await engine.run_ddl(ddl)
        if not sqlite:
            for name in schema.ENTRY_FOREIGN_KEYS:
                await engine.run_ddl(f"ALTER TABLE ledger_entry DROP CONSTRAINT IF EXISTS {name}")

    async def backwards_ddl():
        engine = engine_finder()
        if not isinstance(engine, SQLiteEngine):
            for name, definition in schema.ENTRY_FOREIGN_KEYS.items():
                await engine.run_ddl(f"ALTER TABLE ledger_entry ADD CONSTRAINT {name} {definition}")

    manager.add_raw(forwards_ddl)
    manager.add_raw_backwards(backwards_ddl)
    return manager
