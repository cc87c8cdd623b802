"""apikeys (issue 21): an API key's scope ("read" or "full") and its own rate limit, and the answers
to requests sent with an Idempotency-Key (api_idempotency), one per key and Idempotency-Key.
Written in Piccolo's form, then given its unique index."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder
from piccolo.table import Table


class ApiKey(Table, tablename="api_key", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name="id",
        secret=False,
    )


ID = "2026-12-07T02:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "apikeys: api_key.scope, api_key.requests_per_minute, api_idempotency"

INDEXES = ["CREATE UNIQUE INDEX IF NOT EXISTS api_idempotency_key ON api_idempotency (api_key, key)"]


class _Manager(MigrationManager):
    async def _run_add_columns(self, backwards: bool = False) -> None:
        await super()._run_add_columns(backwards=backwards)
        if not backwards and not self.preview:
            engine = engine_finder()
            for statement in INDEXES:
                await engine.run_ddl(statement)


def _params(**extra):
    params = {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
    }
    params.update(extra)
    return params


async def forwards():
    manager = _Manager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    manager.add_table(class_name="ApiIdempotency", tablename="api_idempotency", schema=None, columns=None)

    key_fk = _params(references=ApiKey, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade, target_column=None)
    columns = [
        ("ApiKey", "api_key", "scope", Varchar, _params(length=8, default="full")),
        ("ApiKey", "api_key", "requests_per_minute", Integer, _params(default=1200)),
        ("ApiIdempotency", "api_idempotency", "api_key", ForeignKey, key_fk),
        ("ApiIdempotency", "api_idempotency", "key", Varchar, _params(length=255, default="")),
        ("ApiIdempotency", "api_idempotency", "request_hash", Varchar, _params(length=64, default="")),
        ("ApiIdempotency", "api_idempotency", "state", Varchar, _params(length=8, default="")),
        ("ApiIdempotency", "api_idempotency", "status_code", Integer, _params(default=0)),
        ("ApiIdempotency", "api_idempotency", "content_type", Varchar, _params(length=100, default="")),
        ("ApiIdempotency", "api_idempotency", "body", Text, _params(default="")),
        ("ApiIdempotency", "api_idempotency", "created_at", Timestamptz, _params(default=TimestamptzNow())),
    ]
    for class_name, tablename, column, column_class, params in columns:
        manager.add_column(
            table_class_name=class_name,
            tablename=tablename,
            column_name=column,
            db_column_name=column,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )

    return manager
