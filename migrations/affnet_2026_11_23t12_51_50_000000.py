"""click_earning's indexes Piccolo cannot declare: one row per (campaign, goal, hour, publisher).

Written by hand (a composite unique index works on both engines; Piccolo's auto migrations run raw
steps before creating tables, so this follows the migration that creates the table)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-23T12:51:50:000000"
VERSION = "1.38.0"
DESCRIPTION = "click_earning: unique per campaign, goal, hour and publisher; indexes for jobs and publishers"

INDEXES = {
    # Each hour of clicks is priced and posted once, however many workers run the job; the CPC job
    # also finds a campaign's last priced hour through it.
    "click_earning_once": "CREATE UNIQUE INDEX IF NOT EXISTS click_earning_once "
    "ON click_earning (campaign, goal, hour, publisher)",
    # The job retries waiting rows and releases approved ones past their hold.
    "click_earning_status": "CREATE INDEX IF NOT EXISTS click_earning_status ON click_earning (status, hold_until)",
    # Publishers' earnings pages.
    "click_earning_publisher": "CREATE INDEX IF NOT EXISTS click_earning_publisher ON click_earning (publisher, hour)",
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
