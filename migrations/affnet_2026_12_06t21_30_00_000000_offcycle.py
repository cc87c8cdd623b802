"""offcycle (issue 19): a payout batch prepared on demand by finance, its cut-off the moment they
asked, is marked off-cycle (the scheduled periods' batches are not)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Boolean
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-06T21:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "offcycle: payout_batch.off_cycle"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)
    manager.add_column(
        table_class_name="PayoutBatch",
        tablename="payout_batch",
        column_name="off_cycle",
        db_column_name="off_cycle",
        column_class_name="Boolean",
        column_class=Boolean,
        params={
            "default": False,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )
    return manager
