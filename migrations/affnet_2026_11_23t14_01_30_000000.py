"""Payouts: a period's batch exists once per currency, a publisher's line once per batch, and a
publisher is carried over once per batch (server/payouts/service.py relies on these to be idempotent)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-23T14:01:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "payouts: one batch per period and currency, one line per publisher and batch"

INDEXES = {
    "payout_batch_one_per_period_currency": "CREATE UNIQUE INDEX IF NOT EXISTS payout_batch_one_per_period_currency "
    "ON payout_batch (period_end, currency)",
    "payout_line_one_per_batch_publisher": "CREATE UNIQUE INDEX IF NOT EXISTS payout_line_one_per_batch_publisher "
    "ON payout_line (batch, publisher)",
    "payout_carry_over_one_per_batch_publisher": "CREATE UNIQUE INDEX IF NOT EXISTS "
    "payout_carry_over_one_per_batch_publisher "
    "ON payout_carry_over (batch, publisher)",
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
