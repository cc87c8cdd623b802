"""funding_expiry (issue 19): when a top-up's Stripe Checkout Session expires unpaid, so a top-up
whose expiry event never arrived is shown expired, not processing forever."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-06T21:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "funding_expiry: funding.expires_at"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)
    manager.add_column(
        table_class_name="Funding",
        tablename="funding",
        column_name="expires_at",
        db_column_name="expires_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": None,
            "null": True,
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
