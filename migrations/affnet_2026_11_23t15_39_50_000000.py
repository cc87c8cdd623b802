"""Indexes of impressions Piccolo cannot declare: by campaign over time (CPM hours, budgets) and by
slot over time (publishers' slot statistics). The offer's uniqueness is the column's own constraint."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-23T15:39:50:000000"
VERSION = "1.38.0"
DESCRIPTION = "impression indexes by campaign and by slot over time"

INDEXES = {
    "impression_campaign_time": "CREATE INDEX IF NOT EXISTS impression_campaign_time ON impression (campaign, viewed_at)",
    "impression_slot_time": "CREATE INDEX IF NOT EXISTS impression_slot_time ON impression (slot, viewed_at)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def create_indexes():
        for ddl in INDEXES.values():
            await engine_finder().run_ddl(ddl)

    async def drop_indexes():
        for name in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
