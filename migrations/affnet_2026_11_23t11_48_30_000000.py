"""The ledger's unique account index and its append-only triggers (server/ledger/schema.py)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

from server.ledger import schema

ID = "2026-11-23T11:48:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "ledger: one account per owner, kind and currency; entries and transactions append-only"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def create():
        engine = engine_finder()
        for ddl in [schema.UNIQUE_ACCOUNT, *schema.append_only_ddl(isinstance(engine, SQLiteEngine))]:
            await engine.run_ddl(ddl)

    async def drop():
        engine = engine_finder()
        for ddl in schema.drop_append_only_ddl(isinstance(engine, SQLiteEngine)):
            await engine.run_ddl(ddl)
        await engine.run_ddl("DROP INDEX IF EXISTS ledger_account_one_per_owner_kind_currency")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
