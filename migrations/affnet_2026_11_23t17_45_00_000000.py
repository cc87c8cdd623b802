"""The reports' rollups: their unique keys and dashboard indexes, time indexes on clicks and
impressions (BRIN on PostgreSQL) to rebuild an hour, and the trigger that stamps conversion
changes for the incremental rollup (server/reports/schema.py)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

from server.reports import schema

ID = "2026-11-23T17:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "rollup keys and indexes, event time indexes, conversion change stamps"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def create():
        engine = engine_finder()
        for ddl in schema.create_ddl(isinstance(engine, SQLiteEngine)):
            await engine.run_ddl(ddl)

    async def drop():
        engine = engine_finder()
        for ddl in schema.drop_ddl(isinstance(engine, SQLiteEngine)):
            await engine.run_ddl(ddl)

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
