"""Partial indexes for the reconciliation job: it walks pending conversions past their hold, and
approved ones not yet released, in id order (server/conversions/approval.py)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-23T12:56:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "conversions: partial indexes for the approval and release batches"

INDEXES = {
    "conversion_pending_by_id": "CREATE INDEX IF NOT EXISTS conversion_pending_by_id "
    "ON conversion (id, hold_until) WHERE status = 'pending'",
    "conversion_unreleased_by_id": "CREATE INDEX IF NOT EXISTS conversion_unreleased_by_id "
    "ON conversion (id, hold_until) WHERE status = 'approved' AND released_at IS NULL",
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
