"""The narrow traffic rollups' unique keys and indexes (server/reports/schema.py)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

from server.reports import schema

ID = "2026-11-23T18:25:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "narrow traffic rollup keys and indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def create():
        for ddl in schema.NARROW_INDEXES.values():
            await engine_finder().run_ddl(ddl)

    async def drop():
        for name in schema.NARROW_INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
