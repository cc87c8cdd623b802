from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Text
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-23T12:53:49:526018"
VERSION = "1.38.0"
DESCRIPTION = "click_earning: unpaid_reason, why clicks went unpaid, apart from why a row waits"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    manager.add_column(
        table_class_name="ClickEarning",
        tablename="click_earning",
        column_name="unpaid_reason",
        db_column_name="unpaid_reason",
        column_class_name="Text",
        column_class=Text,
        params={
            "default": "",
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
