"""The narrow traffic rollups' unique keys and indexes (server/reports/schema.py)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

from server.reports import schema

ID = "2026-11-23T18:25:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "narrow traffic rollup keys and indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def create():
        engine = engine_finder()
        for ddl in schema.narrow_ddl(isinstance(engine, SQLiteEngine)):
            await engine.run_ddl(ddl)

    async def drop():
        for ddl in schema.drop_narrow_ddl():
            await engine_finder().run_ddl(ddl)

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
