"""quality18 (issue 18): the visitor hashes of publishers' own sessions (publisher_visitor, for the
self_conversion rule), publisher-level holds (publisher_hold: the shared_payout_account rule), the
bank-account fingerprints of payout accounts, and a campaign's switched-off click rules. Written in
Piccolo's form, then given its indexes: one row per (publisher, visitor_hash), a publisher's open
holds, and the payout accounts by fingerprint list."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import ForeignKey, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder
from piccolo.table import Table


class User(Table, tablename="app_user", schema=None):
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


ID = "2026-12-06T03:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "quality18: publisher visitors, publisher holds, bank fingerprints, campaign click-rule switches"

INDEXES = [
    "CREATE UNIQUE INDEX IF NOT EXISTS publisher_visitor_unique ON publisher_visitor (publisher, visitor_hash)",
    "CREATE INDEX IF NOT EXISTS publisher_visitor_seen ON publisher_visitor (seen_at)",
    "CREATE INDEX IF NOT EXISTS publisher_hold_open ON publisher_hold (publisher) WHERE decision = ''",
]


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


def _user_fk(null: bool):
    return _params(
        references=User,
        on_delete=OnDelete.restrict,
        on_update=OnUpdate.cascade,
        target_column=None,
        null=null,
    )


async def forwards():
    manager = _Manager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    manager.add_table(class_name="PublisherVisitor", tablename="publisher_visitor", schema=None, columns=None)
    manager.add_table(class_name="PublisherHold", tablename="publisher_hold", schema=None, columns=None)

    columns = [
        ("PublisherVisitor", "publisher_visitor", "publisher", ForeignKey, _user_fk(False)),
        ("PublisherVisitor", "publisher_visitor", "visitor_hash", Varchar, _params(length=32, default="")),
        ("PublisherVisitor", "publisher_visitor", "seen_at", Timestamptz, _params(default=TimestamptzNow())),
        ("PublisherHold", "publisher_hold", "publisher", ForeignKey, _user_fk(False)),
        ("PublisherHold", "publisher_hold", "rule", Varchar, _params(length=32, default="")),
        ("PublisherHold", "publisher_hold", "evidence", Text, _params(default="{}")),
        ("PublisherHold", "publisher_hold", "created_at", Timestamptz, _params(default=TimestamptzNow())),
        ("PublisherHold", "publisher_hold", "decision", Varchar, _params(length=10, default="")),
        ("PublisherHold", "publisher_hold", "decided_by", ForeignKey, _user_fk(True)),
        ("PublisherHold", "publisher_hold", "decided_at", Timestamptz, _params(default=None, null=True)),
        ("PublisherHold", "publisher_hold", "reason", Text, _params(default="")),
        ("PayoutAccount", "payout_account", "bank_fingerprints", Text, _params(default="")),
        ("Campaign", "campaign", "click_rules_off", Varchar, _params(length=80, default="")),
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
