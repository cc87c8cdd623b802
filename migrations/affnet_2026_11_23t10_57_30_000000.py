"""One membership per (campaign, publisher): a unique index, written by hand because Piccolo's
composite UNIQUE constraint cannot be added to an existing table on SQLite."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-23T10:57:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique membership per campaign and publisher"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def create_index():
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX IF NOT EXISTS membership_one_per_publisher ON membership (campaign, publisher)"
        )

    async def drop_index():
        await engine_finder().run_ddl("DROP INDEX IF EXISTS membership_one_per_publisher")

    manager.add_raw(create_index)
    manager.add_raw_backwards(drop_index)
    return manager
