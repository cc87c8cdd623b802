"""Indexes Piccolo cannot declare: one membership per (campaign, publisher), and the click
table's composite indexes. Written by hand: a composite UNIQUE constraint cannot be added to an
existing SQLite table, and a unique index works on both engines."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-23T11:23:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique membership per campaign and publisher; click indexes by campaign and publisher over time"

INDEXES = {
    "membership_one_per_publisher": "CREATE UNIQUE INDEX IF NOT EXISTS membership_one_per_publisher "
    "ON membership (campaign, publisher)",
    # Budget and cap counters count a campaign's clicks since midnight; publishers' statistics
    # read their own clicks over a date range.
    "click_campaign_time": "CREATE INDEX IF NOT EXISTS click_campaign_time ON click (campaign, clicked_at)",
    "click_publisher_time": "CREATE INDEX IF NOT EXISTS click_publisher_time ON click (publisher, clicked_at)",
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
