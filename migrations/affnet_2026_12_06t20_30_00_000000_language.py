"""language (issue 19): the language a person reads affnet in, saved on their account ("" follows
the browser's Accept-Language)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-06T20:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "language: app_user.language"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)
    manager.add_column(
        table_class_name="User",
        tablename="app_user",
        column_name="language",
        db_column_name="language",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 8,
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
