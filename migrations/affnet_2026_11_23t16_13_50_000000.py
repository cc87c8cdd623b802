"""CPM earnings are unique per (campaign, goal, hour, publisher): server/earnings/cpm.py prices an hour
once, and a second pricing of the same hour fails here rather than charging twice."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-23T16:13:50:000000"
VERSION = "1.38.0"
DESCRIPTION = "impression earnings: one per campaign, goal, hour and publisher"

INDEXES = {
    "impression_earning_one_per_hour": "CREATE UNIQUE INDEX IF NOT EXISTS impression_earning_one_per_hour "
    "ON impression_earning (campaign, goal, hour, publisher)",
    # Releasing earnings past their hold looks for approved rows by hold_until.
    "impression_earning_status_hold": "CREATE INDEX IF NOT EXISTS impression_earning_status_hold "
    "ON impression_earning (status, hold_until)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def create():
        for ddl in INDEXES.values():
            await engine_finder().run_ddl(ddl)

    async def drop():
        for name in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager
