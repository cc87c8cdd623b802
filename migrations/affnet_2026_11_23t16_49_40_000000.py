"""The publisher's slot page counts clicks per slot: an index on (slot, clicked_at) for the clicks
that came through an ad offer only, so the clicks of ordinary links (most of them) pay nothing."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-23T16:49:40:000000"
VERSION = "1.38.0"
DESCRIPTION = "clicks by ad slot and time, where the slot is known"

INDEXES = {
    "click_slot_time": "CREATE INDEX IF NOT EXISTS click_slot_time ON click (slot, clicked_at) WHERE slot IS NOT NULL",
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
